// predict_experts: the next layer's router on the current hidden state, top-k per token, distinct.
#include "experts/expert_predict.h"

#include "kernels/kernels.h"

namespace lmlab {

std::vector<int32_t> predict_experts(const Linear& next_router, const float* h, int64_t n, int64_t top_k) {
  const int64_t E = next_router.out_features();
  std::vector<float> logits(static_cast<size_t>(n * E)), w(static_cast<size_t>(top_k));
  std::vector<int32_t> chosen(static_cast<size_t>(top_k)), out;
  std::vector<char> seen(static_cast<size_t>(E), 0);
  next_router.forward(h, logits.data(), n);
  for (int64_t t = 0; t < n; ++t) {
    kernels::route_topk(logits.data() + t * E, E, top_k, false, chosen.data(), w.data());
    for (int32_t e : chosen)
      if (!seen[e]) seen[e] = 1, out.push_back(e);
  }
  return out;
}

}  // namespace lmlab
