// Reference RMSNorm: y = x / sqrt(mean(x^2) + eps) * w (any (1 + w) offset is folded into w at load).
#include <cmath>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = xr[i] * inv * w[i];
  }
}

}  // namespace lmlab::kernels::ref
