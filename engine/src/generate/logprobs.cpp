// Token log-probabilities as OpenAI reports them: the log-softmax of the model's raw logits (before
// temperature, top-k/top-p/min-p), for the chosen token and the most likely alternatives.
#include <algorithm>
#include <cmath>
#include <vector>

#include "generate/logit_order.h"
#include "kernels/kernels.h"
#include "lmlab/generate.h"

namespace lmlab {

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t id, int n_top) {
  // log Z = m + log(sum e^(l - m)), m the largest number (a NaN logit weighs nothing): the terms by the sampler's
  // vector exp (~1 ulp each), summed in double lanes, since a 150K vocabulary of float sums loses digits. (Scalar
  // double exps took ~1 ms a token: each streamed token with logprobs paid it.)
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float m = logits[static_cast<size_t>(kernels::cpu::argmax(logits.data(), vocab))];
  thread_local std::vector<float> w;
  w.resize(logits.size());
  const double log_z = m + std::log(kernels::cpu::scaled_exp(logits.data(), vocab, m, 1.0f, w.data()));
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
