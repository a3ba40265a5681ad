// What every sample source shares: the refusal to evaluate perplexity where no next-token probabilities are
// visible (over HTTP), recorded as the evaluation's error rather than skipped.
#include "sample_source.h"

namespace lmlab::harness_detail {

Evaluation SampleSource::evaluate(const std::string& config, int64_t /*tokens*/) {
  Evaluation e;
  e.config = config;
  e.error = "perplexity needs the engine in process (--mode in-process): a server streams tokens, not probabilities";
  return e;
}

}  // namespace lmlab::harness_detail
