// Teacher-forced evaluation: per-token negative log-likelihood of a token sequence under the model.
#pragma once

#include <span>
#include <vector>

#include "lmlab/model.h"

namespace lmlab {

struct NllResult {
  std::vector<double> nll;  // nll[i] = -log p(ids[i + 1] | ids[0..i]), size ids.size() - 1
  double mean_nll() const;
  double perplexity() const;  // exp(mean_nll)
};

// Runs ids through a fresh session in prefill chunks (the model's prefill_size).
NllResult evaluate_nll(const Model& model, std::span<const int32_t> ids);

// log-softmax of one logit row, value at `target`.
double log_prob(std::span<const float> logits, int32_t target);

}  // namespace lmlab
