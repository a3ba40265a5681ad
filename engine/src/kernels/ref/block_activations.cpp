// Reference of the block-quantized activations and of the affine matmul over them (block_activations.h).
#include "kernels/block_activations.h"

#include <cmath>
#include <vector>

namespace lmlab::kernels::ref {

void quantize_blocks(const float* x, int64_t n, int64_t cols, int32_t qmax, BlockActivations& out) {
  const int64_t nb = cols / kActivationBlock;
  out.n = n;
  out.cols = cols;
  out.q.resize(static_cast<size_t>(n * cols));
  out.d.resize(static_cast<size_t>(n * nb));
  out.sums.resize(static_cast<size_t>(n * nb));
  const float fmax_q = static_cast<float>(qmax);
  for (int64_t b = 0; b < n * nb; ++b) {
    const float* xb = x + b * kActivationBlock;
    float amax = 0.0f;
    for (int64_t i = 0; i < kActivationBlock; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float inv = amax > 0.0f ? fmax_q / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t i = 0; i < kActivationBlock; ++i) {
      const auto v = static_cast<int16_t>(std::nearbyint(xb[i] * inv));  // |v| <= qmax
      out.q[b * kActivationBlock + i] = v;
      sum += v;
    }
    out.d[b] = amax / fmax_q;
    out.sums[b] = sum;
  }
}

void matmul_affine_blocks(const AffineWeight& w, const BlockActivations& x, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_affine_row(w, r, row.data());
    for (int64_t t = 0; t < x.n; ++t) {
      double acc = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t i = t * w.cols + c;
        acc += static_cast<double>(row[c]) * (static_cast<double>(x.d[i / kActivationBlock]) * x.q[i]);
      }
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace lmlab::kernels::ref
