// Token log-probabilities as OpenAI reports them: the log-softmax of the model's raw logits (before
// temperature, top-k/top-p/min-p), for the chosen token and the most likely alternatives.
#include <algorithm>
#include <cmath>
#include <vector>

#include "generate/logit_order.h"
#include "kernels/kernels.h"
#include "lmlab/generate.h"

namespace lmlab {

// OpenAI's logprob for a token of probability zero (JSON has no -inf, and a NaN would go out as null, which clients
// reject where they expect a number).
constexpr float kNoProbability = -9999.0f;

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t id, int n_top) {
  // log Z = m + log(sum e^(l - m)), m the largest number (a NaN logit weighs nothing): the terms by the sampler's
  // vector exp (~1 ulp each), summed in double lanes, since a 150K vocabulary of float sums loses digits. (Scalar
  // double exps took ~1 ms a token: each streamed token with logprobs paid it.)
  // Logits that are not all numbers (a broken checkpoint, an overflow) still give numbers: +inf logits share the
  // whole mass; with no number and no +inf (all NaN or -inf) every token is equally likely; a token without
  // probability (NaN, -inf, or a number beside a +inf) reports kNoProbability.
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float m = logits[static_cast<size_t>(kernels::cpu::argmax(logits.data(), vocab))];
  double log_z = 0.0;
  float infinite_share = 0.0f;  // the logprob of a +inf logit when m is +inf
  if (std::isfinite(m)) {
    thread_local std::vector<float> w;
    w.resize(logits.size());
    log_z = m + std::log(kernels::cpu::scaled_exp(logits.data(), vocab, m, 1.0f, w.data()));
  } else if (m > 0.0f) {
    infinite_share = -std::log(static_cast<float>(std::count(logits.begin(), logits.end(), m)));
  }
  auto logprob_of = [&](float l) {
    if (std::isfinite(m)) {
      const double lp = l - log_z;
      return std::isfinite(lp) ? static_cast<float>(lp) : kNoProbability;
    }
    if (m > 0.0f) return l == m ? infinite_share : kNoProbability;
    return -std::log(static_cast<float>(vocab));
  };
  TokenLogprobs out;
  out.logprob = logprob_of(logits[static_cast<size_t>(id)]);
  const size_t k = std::min(static_cast<size_t>(std::max(n_top, 0)), logits.size());
  if (k == 0) return out;
  const std::vector<int32_t> ids = first_ids_by_logit(logits, k);
  out.top.reserve(k);
  for (size_t i = 0; i < k; ++i) out.top.push_back({ids[i], logprob_of(logits[ids[i]])});
  return out;
}

}  // namespace lmlab
