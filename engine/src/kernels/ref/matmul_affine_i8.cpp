// Reference for the split-int8 affine matmul: quantize the activations block by block, then multiply the
// dequantized weights by the dequantized activations x_hat in double. The cpu:: kernels must reach the same
// numbers through integer dots and the folded scale and bias (matmul_affine_i8.h).
#include <cmath>
#include <vector>

#include "kernels/matmul_affine_i8.h"

namespace lmlab::kernels {

bool affine_i8_supported(const AffineWeight& w) {
  return w.bits == 4 && w.group_size > 0 && w.group_size % kI8Block == 0 && w.cols > 0 && w.cols % w.group_size == 0;
}

namespace ref {

void quantize_i8(const float* x, int64_t n, int64_t cols, I8Activations& out) {
  const int64_t nb = cols / kI8Block;
  out.n = n;
  out.cols = cols;
  out.q.resize(static_cast<size_t>(n * cols));
  out.d.resize(static_cast<size_t>(n * nb));
  out.sums.resize(static_cast<size_t>(n * nb));
  for (int64_t b = 0; b < n * nb; ++b) {
    const float* xb = x + b * kI8Block;
    float amax = 0.0f;
    for (int64_t i = 0; i < kI8Block; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float inv = amax > 0.0f ? static_cast<float>(kI8Max) / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t i = 0; i < kI8Block; ++i) {
      const auto v = static_cast<int16_t>(std::nearbyint(xb[i] * inv));  // |v| <= kI8Max
      out.q[b * kI8Block + i] = v;
      sum += v;
    }
    out.d[b] = amax / static_cast<float>(kI8Max);
    out.sums[b] = sum;
  }
}

void matmul_affine_i8(const AffineWeight& w, const I8Activations& x, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_affine_row(w, r, row.data());
    for (int64_t t = 0; t < x.n; ++t) {
      double acc = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t i = t * w.cols + c;
        acc += static_cast<double>(row[c]) * (static_cast<double>(x.d[i / kI8Block]) * x.q[i]);
      }
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace ref
}  // namespace lmlab::kernels
