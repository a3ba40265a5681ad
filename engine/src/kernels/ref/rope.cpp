// Reference rotary embedding in the rotate_half layout.
#include <cmath>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void rope(const RopeArgs& a) {
  const int64_t half = a.rot_dim / 2;
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t i = 0; i < half; ++i) {
      // f32 product as HF computes it, then cos/sin.
      const float angle = static_cast<float>(a.positions[t]) * a.inv_freq[i];
      const float c = static_cast<float>(std::cos(static_cast<double>(angle))) * a.attention_scaling;
      const float s = static_cast<float>(std::sin(static_cast<double>(angle))) * a.attention_scaling;
      for (int64_t h = 0; h < a.n_heads; ++h) {
        float* x = a.x + (t * a.n_heads + h) * a.head_dim;
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
      }
    }
}

}  // namespace lmlab::kernels::ref
