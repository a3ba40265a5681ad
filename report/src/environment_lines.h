// The environment header of both reports: the run's recorded machine and build (RunInfo.environment_json,
// written by the harness) and the engine options its configs share, as (label, value) lines in a fixed order.
// A run recorded before the environment was stored (schema < 3) yields a single "not recorded" line.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lmlab/results.h"

namespace lmlab::report_detail {

std::vector<std::pair<std::string, std::string>> environment_lines(const RunInfo& run);

}  // namespace lmlab::report_detail
