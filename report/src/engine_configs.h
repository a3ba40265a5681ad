// The per-config engine options a run recorded (RunInfo.engine_config_json, written by the harness), read
// back for the reports' configuration section (and its prompt, baseline and published reference for the other
// sections). A run written by something else may lack them: then empty.
// A merged report (--runs) describes each config from the runs its samples come from, so a config measured only by
// an earlier run, or with other options by two runs, is shown as it ran.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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

// A published sweep's decode ratios (the scenario's "reference", recorded under engine config "reference" by the
// harness's reference_json, or given to `lmlab report --reference`).
struct PublishedRatios {
  std::string name;         // heads its columns ("SwiftLM 512")
  std::string description;  // may be empty
  std::string baseline;     // the config its ratios are over
  std::map<std::string, std::map<int64_t, double>> ratios;  // config -> context -> ratio
};
// The block as reference_json writes it; nullopt for null or anything else (a run written by another tool).
std::optional<PublishedRatios> published_ratios(const std::string& reference_json);
std::optional<PublishedRatios> recorded_reference(const RunInfo& run);  // nullopt when the run recorded none

}  // namespace lmlab::report_detail
