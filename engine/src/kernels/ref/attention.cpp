// Reference attention: materialise each query's score row, softmax, weighted sum of V.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void attention(const AttentionArgs& a) {
  const int64_t group = a.n_heads / a.n_kv_heads;
  std::vector<double> scores(static_cast<size_t>(a.n_kv));
  for (int64_t t = 0; t < a.n_q; ++t) {
    const int64_t pos = a.q_pos0 + t;
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const int64_t kh = h / group;
      const float* q = a.q + (t * a.n_heads + h) * a.head_dim;
      double max_s = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < a.n_kv; ++j) {
        const int64_t kpos = a.kv_pos0 + j;
        const bool visible = kpos <= pos && (a.window <= 0 || kpos > pos - a.window);
        if (!visible) {
          scores[j] = -std::numeric_limits<double>::infinity();
          continue;
        }
        const float* k = attention_k_row(a, j) + kh * a.head_dim;
        double s = 0.0;
        for (int64_t d = 0; d < a.head_dim; ++d) s += static_cast<double>(q[d]) * k[d];
        s *= a.scale;
        if (a.softcap > 0.0f) s = a.softcap * std::tanh(s / a.softcap);
        scores[j] = s;
        if (s > max_s) max_s = s;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < a.n_kv; ++j) {
        scores[j] = std::isinf(scores[j]) ? 0.0 : std::exp(scores[j] - max_s);
        sum += scores[j];
      }
      float* out = a.out + (t * a.n_heads + h) * a.head_dim;
      for (int64_t d = 0; d < a.head_dim; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j < a.n_kv; ++j)
          if (scores[j] != 0.0) acc += scores[j] * attention_v_row(a, j)[kh * a.head_dim + d];
        out[d] = sum > 0.0 ? static_cast<float>(acc / sum) : 0.0f;
      }
    }
  }
}

}  // namespace lmlab::kernels::ref
