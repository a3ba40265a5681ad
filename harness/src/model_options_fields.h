// The ModelOptions fields a scenario may set, under one table of key names used both to read scenario
// "options" objects and to write a run's engine configuration (so the two can never disagree).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

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

}  // namespace lmlab::harness_detail
