// Reference matmul: one f32 (double-accumulated) dot product per output, no tricks.
#include "kernels/kernels.h"
#include "util/half.h"

namespace lmlab::kernels::ref {

static float weight_at(const MatmulArgs& a, int64_t r, int64_t c) {
  const int64_t i = r * a.cols + c;
  switch (a.type) {
    case WeightType::f32: return static_cast<const float*>(a.w)[i];
    case WeightType::f16: return f16_to_f32(static_cast<const uint16_t*>(a.w)[i]);
    case WeightType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(a.w)[i]);
  }
  return 0.0f;
}

void matmul(const MatmulArgs& a) {
  for (int64_t t = 0; t < a.n; ++t)
    for (int64_t r = 0; r < a.rows; ++r) {
      double acc = 0.0;
      for (int64_t c = 0; c < a.cols; ++c) acc += static_cast<double>(weight_at(a, r, c)) * a.x[t * a.cols + c];
      a.y[t * a.rows + r] = static_cast<float>(acc);
    }
}

}  // namespace lmlab::kernels::ref
