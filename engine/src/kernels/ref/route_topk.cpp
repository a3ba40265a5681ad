// Reference MoE router: softmax over all experts, keep the k most probable, optionally renormalise.
// (Mixtral's "top-k of logits then softmax" gives the same weights as this with renormalize = true.)
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void route_topk(const float* logits, int64_t n_experts, int64_t k, bool renormalize, int32_t* experts, float* weights) {
  std::vector<float> p(logits, logits + n_experts);
  softmax(p.data(), n_experts);
  std::vector<int32_t> order(static_cast<size_t>(n_experts));
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int32_t e) { return std::isnan(p[e]) ? -1.0f : p[e]; };  // NaN last: a strict weak order
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return key(a) > key(b); });
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += p[order[i]];
  for (int64_t i = 0; i < k; ++i) {
    experts[i] = order[i];
    weights[i] = renormalize ? static_cast<float>(p[order[i]] / sum) : p[order[i]];
  }
}

}  // namespace lmlab::kernels::ref
