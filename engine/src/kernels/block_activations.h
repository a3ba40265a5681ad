// Activations quantized per block of 32 values to 16-bit integers (symmetric, round to nearest even), shared by
// the integer-dot affine kernels: x[c] ~ xd[b] * xq[c], b = c / 32, xd[b] = max|x in b| / qmax,
// xq = nearbyint(x * (qmax / max|x in b|)), |xq| <= qmax; an all-zero block has xd = 0. matmul_affine_i16.h
// quantizes with qmax 32767, matmul_affine_i8.h with 32639 (so that each xq splits into two signed bytes).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul_affine.h"

namespace lmlab::kernels {

constexpr int64_t kActivationBlock = 32;  // activation values per block (one scale each)

// Activations X[n, cols] quantized per block; cols a multiple of kActivationBlock.
struct BlockActivations {
  int64_t n = 0, cols = 0;
  std::vector<int16_t> q;     // [n, cols], natural order
  std::vector<float> d;       // [n, cols / kActivationBlock] block scales
  std::vector<int32_t> sums;  // [n, cols / kActivationBlock] sum of q over each block

  int64_t blocks_per_row() const { return cols / kActivationBlock; }
};

namespace ref {
// Plain per-value loop.
void quantize_blocks(const float* x, int64_t n, int64_t cols, int32_t qmax, BlockActivations& out);
// y[n, rows] = x_hat . W^T in double, x_hat = xd * xq, with W dequantized in f32 as MLX does
// (ref::dequantize_affine_row): what the integer-dot kernels must reach up to f32 rounding.
void matmul_affine_blocks(const AffineWeight& w, const BlockActivations& x, float* y);
}  // namespace ref

namespace cpu {
// Bit-identical to ref::quantize_blocks (the same f32 operations, vectorised: AVX-512, AVX2, else the reference).
void quantize_blocks(const float* x, int64_t n, int64_t cols, int32_t qmax, BlockActivations& out);
}  // namespace cpu

}  // namespace lmlab::kernels
