// Scenario "options" objects and a run's recorded engine configuration, both through the engine's option table
// (lmlab/options.h), so the keys a scenario sets and the keys a run records can never disagree.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "lmlab/harness.h"
#include "lmlab/model.h"

namespace lmlab::harness_detail {

// "FILE: field 'FIELD'": how every scenario error names its place.
std::string field_where(const std::string& file, const std::string& field);

// Applies every key of `object` (found at `field` of `file`) to `options`. Throws lmlab::Error naming the
// file and the key's field on an unknown key, a wrong type or an out-of-range value. `forbidden_keys`: keys
// this object may not set (`reason` says why).
void apply_options(const nlohmann::json& object, const std::string& file, const std::string& field,
                   ModelOptions& options,
                   const std::vector<std::string>& forbidden_keys = {}, const std::string& reason = {});

nlohmann::json options_to_json(const ModelOptions& options);

// The scenario's "reference" as a run records it (lmlab::reference_json's object; null without one).
nlohmann::json reference_to_json(const Scenario& scenario);

}  // namespace lmlab::harness_detail
