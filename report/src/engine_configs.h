// The per-config engine options a run recorded (RunInfo.engine_config_json, written by the harness), read
// back for the reports' configuration section. A run written by something else may lack them: then empty.
// A merged report (--runs) describes each config from the runs its samples come from, so a config measured only by
// an earlier run, or with other options by two runs, is shown as it ran.
#pragma once

#include <string>
#include <vector>

#include "lmlab/results.h"

namespace lmlab::report_detail {

struct ConfigDescription {
  std::string name;
  std::string summary;        // e.g. "KV turbo (K5 V4, every token compressed) · experts streamed, cache 5 MiB (reuse)"
  std::vector<int64_t> runs;  // merged reports: the runs whose samples of the config ran with these options
};

// One run: every config its engine config lists, in its order.
std::vector<ConfigDescription> describe_configs(const RunInfo& run);
// Several runs (`runs` in the --runs order): every config with samples, in the samples' order, one entry per
// distinct description among the runs its samples come from ("not recorded" for a run that lacks the config).
// Empty when no run recorded any config.
std::vector<ConfigDescription> describe_configs(const std::vector<RunInfo>& runs, const std::vector<Sample>& samples);
// The scenario's first config (the baseline of the decode ratios): the first run's, in `runs` order, that recorded
// its configs; "" when none did.
std::string first_recorded_config(const std::vector<RunInfo>& runs);
std::string describe_prompt(const RunInfo& run);  // "" when not recorded

}  // namespace lmlab::report_detail
