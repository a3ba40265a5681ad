// Internal: the loop every lab run shares (bench in any mode, compare): a list of passes (a config or a
// runtime), each a sample source measured at every context x repetition into one results run.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lmlab/harness.h"
#include "sample_source.h"

namespace lmlab::harness_detail {

struct Pass {
  std::string name;  // the samples' config
  std::string kind;  // "config" or "runtime": how messages name the pass
  std::function<std::unique_ptr<SampleSource>()> make;  // throws lmlab::Error: the pass is recorded as errors
};

// Runs after the samples, before the run is marked complete (the quality phase); returns how many configs'
// evaluations failed (RunOutcome.quality_errors). `say` writes a progress line.
using AfterSamples = std::function<int64_t(int64_t run, const std::function<void(const std::string&)>& say)>;

// The run's RunInfo for a scenario (throws when it names no model or the model has no safetensors): the commit
// this binary was built from and this machine's environment and fingerprint unless the settings give them.
RunInfo run_info_of(const Scenario& scenario, const RunSettings& settings);

// Begins the run, measures every pass (one source alive at a time; all of them at once, context by context,
// when the scenario interleaves), records each pass's evaluation when the scenario asks for perplexity, marks
// the run complete. `started` is told of each source that started (compare stores the runtime's version);
// `after_samples` runs once every sample is recorded.
RunOutcome run_passes(const Scenario& scenario, const RunInfo& info, const std::vector<Pass>& passes,
                      ResultsStore& store, const RunSettings& settings, const std::string& label,
                      const std::function<void(int64_t run, const Pass&, const SampleSource&)>& started = {},
                      const AfterSamples& after_samples = {});

}  // namespace lmlab::harness_detail
