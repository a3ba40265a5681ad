// Token log-probabilities as OpenAI reports them: the log-softmax of the model's raw logits (before
// temperature, top-k/top-p/min-p), for the chosen token and the most likely alternatives.
#include <algorithm>
#include <cmath>
#include <vector>

#include "generate/logit_order.h"
#include "lmlab/generate.h"

namespace lmlab {

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t id, int n_top) {
  // log Z = m + log(sum exp(l - m)) in double: a 150k vocabulary of float terms loses digits otherwise.
  const float m = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) - m);
  const double log_z = m + std::log(sum);
  TokenLogprobs out;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(id)] - log_z);
  const size_t k = std::min(static_cast<size_t>(std::max(n_top, 0)), logits.size());
  if (k == 0) return out;
  const std::vector<int32_t> ids = first_ids_by_logit(logits, k);
  out.top.reserve(k);
  for (size_t i = 0; i < k; ++i) out.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - log_z)});
  return out;
}

}  // namespace lmlab
