// The per-config engine options a run recorded (RunInfo.engine_config_json, written by the harness), read
// back for the reports' configuration section. A run written by something else may lack them: then empty.
#pragma once

#include <string>
#include <vector>

#include "lmlab/results.h"

namespace lmlab::report_detail {

struct ConfigDescription {
  std::string name;
  std::string summary;  // e.g. "KV turbo (K5 V4, every token compressed) · experts streamed, cache 5 MiB (reuse)"
};

std::vector<ConfigDescription> describe_configs(const RunInfo& run);
std::string describe_prompt(const RunInfo& run);  // "" when not recorded

}  // namespace lmlab::report_detail
