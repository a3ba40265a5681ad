// Affine-quantized matmul on integer dot products: the activations quantized once per call, the weights used
// as stored (MLX's packed layout, memory-mapped), multiplied by AVX-512 VNNI vpdpwssd / AVX2 vpmaddwd.
//
// The activations are quantized per block of 32 values to int16 (symmetric, round to nearest even):
// x[c] ~ xd[b] * xq[c], b = c / 32, xd[b] = max|x in b| / 32767. With W[r, c] = s[r, g] * q[r, c] + bias[r, g]
// (matmul_affine.h) the product against the quantized activations splits exactly into integer dots:
//   y[r] = sum_g s[r, g] * sum_{b in g} xd[b] * (sum_{c in b} q[r, c] * xq[c])      (int32, exact)
//        + sum_g bias[r, g] * X[g],   X[g] = sum_{b in g} xd[b] * (sum_{c in b} xq[c])
// so the result is W . x_hat, x_hat = xd * xq, up to f32 rounding; the only approximation is x -> x_hat
// (at most 1/65534 of the block's largest value per value).
// Why int16 and not llama.cpp's int8: with int8 activations (error up to 1/254 of the block max) the golden
// tests of the MLX fixtures fail (logit error 0.05-0.10 against the 0.02 bound, greedy tokens diverge, one
// coder-moe-sparse-4bit token's NLL moves by 0.77; docs/quantization.md). int16 keeps them as the f32 kernel
// does; decode stays bound by the weight bytes, not by the wider activations.
// 4- and 8-bit weights with group sizes that are multiples of 32 take this path.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/block_activations.h"
#include "kernels/matmul_affine.h"

namespace lmlab::kernels {

constexpr int64_t kI16Block = kActivationBlock;
constexpr int32_t kI16Max = 32767;
using I16Activations = BlockActivations;  // quantized with kI16Max

// True when matmul_affine_i16 handles this weight (4 or 8 bits, group size a multiple of 32).
bool affine_i16_supported(const AffineWeight& w);

namespace ref {
inline void quantize_i16(const float* x, int64_t n, int64_t cols, I16Activations& out) {
  quantize_blocks(x, n, cols, kI16Max, out);
}
inline void matmul_affine_i16(const AffineWeight& w, const I16Activations& x, float* y) {
  matmul_affine_blocks(w, x, y);
}
}  // namespace ref

namespace cpu {
inline void quantize_i16(const float* x, int64_t n, int64_t cols, I16Activations& out) {
  quantize_blocks(x, n, cols, kI16Max, out);
}
// Integer-dot kernels: AVX-512 VNNI (vpdpwssd), AVX2 (vpmaddwd; also AVX-512 CPUs without VNNI), scalar; rows
// split over ThreadPool::global(). Requires affine_i16_supported(w).
void matmul_affine_i16(const AffineWeight& w, const I16Activations& x, float* y);
// Quantize a.x and multiply: the drop-in for matmul_affine when affine_i16_supported(a.w).
void matmul_affine_int(const MatmulAffineArgs& a);
}  // namespace cpu

using cpu::matmul_affine_int;

}  // namespace lmlab::kernels
