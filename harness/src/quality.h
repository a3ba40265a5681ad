// The quality phase of a run (Scenario.quality): after the speed sweep, each config evaluates the held-out
// sequences teacher-forced; its perplexity and its KL divergence from the vanilla config's next-token
// distributions are recorded as Evaluations (raw sums; results/ does the arithmetic).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lmlab/harness.h"

namespace lmlab::harness_detail {

// eval_ids_0 .. eval_ids_<sequences-1> of the golden file, each cut to max_tokens when set. Throws
// lmlab::Error naming the file and tensor (missing, not int32, shorter than 2 tokens).
std::vector<std::vector<int32_t>> load_eval_sequences(const QualitySpec& spec);

// Records one Evaluation per (config, sequence) into `store` (one with `error` set for a config that failed);
// `say` gets one line per config. Returns the number of configs whose evaluation failed; the speed samples are
// never touched.
int64_t run_quality(const Scenario& scenario, const std::vector<std::vector<int32_t>>& sequences,
                    ResultsStore& store, int64_t run_id, const std::function<void(const std::string&)>& say);

}  // namespace lmlab::harness_detail
