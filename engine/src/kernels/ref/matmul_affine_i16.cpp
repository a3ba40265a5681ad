// Reference for the integer-dot affine matmul: quantize the activations block by block, then multiply the
// dequantized weights by the dequantized activations x_hat in double. The cpu:: kernel must reach the same
// numbers through integer dots and the folded scale and bias (matmul_affine_i16.h).
#include <cmath>
#include <vector>

#include "kernels/matmul_affine_i16.h"

namespace lmlab::kernels {

bool affine_i16_supported(const AffineWeight& w) {
  return (w.bits == 4 || w.bits == 8) && w.group_size > 0 && w.group_size % kI16Block == 0 && w.cols > 0 &&
         w.cols % w.group_size == 0;
}

namespace ref {

void quantize_i16(const float* x, int64_t n, int64_t cols, I16Activations& out) {
  const int64_t nb = cols / kI16Block;
  out.n = n;
  out.cols = cols;
  out.q.resize(static_cast<size_t>(n * cols));
  out.d.resize(static_cast<size_t>(n * nb));
  out.sums.resize(static_cast<size_t>(n * nb));
  for (int64_t b = 0; b < n * nb; ++b) {
    const float* xb = x + b * kI16Block;
    float amax = 0.0f;
    for (int64_t i = 0; i < kI16Block; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t i = 0; i < kI16Block; ++i) {
      const auto v = static_cast<int16_t>(std::nearbyint(xb[i] * inv));  // |v| <= 32767
      out.q[b * kI16Block + i] = v;
      sum += v;
    }
    out.d[b] = amax / 32767.0f;
    out.sums[b] = sum;
  }
}

void matmul_affine_i16(const AffineWeight& w, const I16Activations& x, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_affine_row(w, r, row.data());
    for (int64_t t = 0; t < x.n; ++t) {
      double acc = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t i = t * w.cols + c;
        acc += static_cast<double>(row[c]) * (static_cast<double>(x.d[i / kI16Block]) * x.q[i]);
      }
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace ref
}  // namespace lmlab::kernels
