// MoE routing for one token (semantics: kernels.h). Scalar: n_experts is at most a few hundred. The
// probabilities are computed exactly like the reference softmax (f32 max, double sum), and the k best are
// chosen with a partial sort ordered by (probability desc, index asc), which is the reference's stable sort
// restricted to its first k, so experts and weights match the reference exactly.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

void route_topk(const float* logits, int64_t n_experts, int64_t k, bool renormalize, int32_t* experts, float* weights) {
  if (n_experts <= 0 || k <= 0) return;
  k = std::min(k, n_experts);
  float m = logits[0];
  for (int64_t i = 1; i < n_experts; ++i) m = logits[i] > m ? logits[i] : m;
  double sum = 0.0;
  for (int64_t i = 0; i < n_experts; ++i) sum += std::exp(static_cast<double>(logits[i]) - m);
  std::vector<float> p(static_cast<size_t>(n_experts));
  for (int64_t i = 0; i < n_experts; ++i) p[i] = static_cast<float>(std::exp(static_cast<double>(logits[i]) - m) / sum);

  std::vector<int32_t> order(static_cast<size_t>(n_experts));
  std::iota(order.begin(), order.end(), 0);
  // A NaN probability (any NaN or infinite logit makes them all NaN) orders last: NaN in the comparison was
  // undefined behaviour for the sort; the weights stay NaN, so the output shows it.
  auto key = [&](int32_t e) { return std::isnan(p[e]) ? -1.0f : p[e]; };
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
  double top_sum = 0.0;
  for (int64_t i = 0; i < k; ++i) top_sum += p[order[i]];
  for (int64_t i = 0; i < k; ++i) {
    experts[i] = order[i];
    weights[i] = renormalize ? static_cast<float>(p[order[i]] / top_sum) : p[order[i]];
  }
}

}  // namespace lmlab::kernels::cpu
