// Fused dequantize-and-multiply over MLX affine-quantized weights (the mlx-community format).
//
// Layout of one weight matrix W[rows, cols] (rows = out features, cols = in features):
//   packed  [rows, cols * bits / 32] uint32: each row is a little-endian bit stream, value c at bit c * bits
//           (first value in the lowest bits of the first word; 3- and 6-bit values may straddle words).
//   scales  [rows, cols / group_size], biases [rows, cols / group_size] in bf16, f16 or f32.
//   W[r, c] = scales[r, g] * q[r, c] + biases[r, g], g = c / group_size, q in [0, 2^bits).
// The kernels never build a dequantized copy of W: decode (n == 1) streams the packed bytes once, computing
//   y[r] = sum_g scales[r, g] * (sum_{c in g} q[r, c] x[c]) + sum_g biases[r, g] * (sum_{c in g} x[c]),
// and prefill (n > 1) dequantizes a few rows by a column block into an L1-sized tile reused for many tokens.
#pragma once

#include <cstdint>

namespace lmlab::kernels {

enum class ScaleType { f32, f16, bf16 };

struct AffineWeight {
  const uint32_t* packed;  // [rows, cols * bits / 32]
  const void* scales;      // [rows, cols / group_size]
  const void* biases;      // [rows, cols / group_size]
  ScaleType scale_type;
  int bits;        // 2, 3, 4, 5, 6 or 8
  int group_size;  // a multiple of 32 (MLX uses 32, 64, 128)
  int64_t rows, cols;

  int64_t words_per_row() const { return cols * bits / 32; }
  int64_t groups_per_row() const { return cols / group_size; }
  // Bytes one full pass over the weight reads: packed values plus scales and biases.
  uint64_t bytes() const;
};

// Y[n, rows] = X[n, cols] . W^T with W as above; f32 activations and accumulation.
struct MatmulAffineArgs {
  AffineWeight w;
  const float* x;  // [n, cols], row stride cols
  float* y;        // [n, rows], row stride rows
  int64_t n;
};

// Element i of a scales or biases array as f32.
float affine_scale_value(const void* p, ScaleType t, int64_t i);

// True when the weight's parameters are ones these kernels handle (bits, group size, cols divisible).
bool affine_params_supported(int bits, int group_size, int64_t cols);

namespace ref {
// One double-accumulated dot product per output over W[r, c] = s * q + b computed in f32.
void matmul_affine(const MatmulAffineArgs& a);
// Row r of W as f32 [cols] (embedding lookup, tests).
void dequantize_affine_row(const AffineWeight& w, int64_t r, float* out);
}  // namespace ref

namespace cpu {
// AVX-512 / AVX2 fast paths for 2, 4 and 8 bits (group size a multiple of 16 * 8 / bits), a scalar
// unpacking path for everything else; multi-threaded over rows through ThreadPool::global().
void matmul_affine(const MatmulAffineArgs& a);
}  // namespace cpu

using cpu::matmul_affine;

}  // namespace lmlab::kernels
