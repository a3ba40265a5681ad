// 4-bit affine matmul on int8 dot products (vpdpbusd) for decode and small batches, where the int16 kernel
// (matmul_affine_i16.h) is bound by vector work per weight *and token*: 4 vpdpwssd per 128 weights and token,
// then a convert, scale and accumulate per 128 weights and token.
//
// Arithmetic. The activations are quantized per block of 32 values to 16 bits (symmetric, round to nearest even):
// x[c] ~ xd[b] * xq[c], b = c / 32, xd[b] = max|x in b| / 32639, |xq| <= 32639, and each xq is split into two
// signed bytes, xq = 256 * hi + lo, hi = (xq + 128) >> 8 in [-127, 127], lo in [-128, 127] (32639 = 127 * 256 +
// 127 keeps hi a byte). With W[r, c] = s[r, g] * q[r, c] + bias[r, g] (matmul_affine.h; q in [0, 16) as an
// unsigned byte, hi and lo signed ones: vpdpbusd's operand types):
//   y[r] = sum_g s[r, g] * sum_{b in g} xd[b] * (256 * (q . hi)_b + (q . lo)_b)     (int32, exact)
//        + sum_g bias[r, g] * X[g],   X[g] = sum_{b in g} xd[b] * (sum_{c in b} xq[c])
// so y = W . x_hat up to f32 rounding, x_hat = xd * xq; the only approximation is x -> x_hat (at most 1/65278
// of the block's largest value per value, as the int16 kernel).
// Why not plain int8 activations (llama.cpp's Q8_0, half the dot products): on the fixtures, with every matrix
// and prompt on this kernel, int8 moved the golden logits by 0.04-1.07 against the 0.02 bound (greedy tokens
// diverged on llama-4bit and qwen3_moe-4bit); the split keeps them at 2e-4 - 5e-4, as int16 does.
//
// Why the work per token is small: the vector kernel puts 16 *rows* in the 16 int32 lanes (a 16 x 16 transpose
// of the packed words per 64-byte chunk, shared by all tokens), so a token costs two vpdpbusd per 64 weights
// (hi and lo, each with its 4 activation bytes broadcast from memory) and one combine + convert + scale +
// accumulate per block of 32 values per 16 rows; the bias term is one fused multiply-add per group per 16 rows.
// A row's result does not depend on the other tokens in the call (each token's arithmetic is the same whatever
// the batch): batch-invariant.
// 4-bit weights with group sizes that are multiples of 32 take this path; weights the model keeps resident are
// repacked at load into 16-row panels (affine_panels.h) and take matmul_affine_i8_panels.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/affine_panels.h"
#include "kernels/block_activations.h"
#include "kernels/matmul_affine.h"

namespace lmlab::kernels {

constexpr int64_t kI8Block = kActivationBlock;
constexpr int32_t kI8Max = 32639;  // largest |xq|: 127 * 256 + 127, so that hi = (xq + 128) >> 8 is a byte
using I8Activations = BlockActivations;  // quantized with kI8Max; the kernels split q into hi and lo

// True when matmul_affine_i8 handles this weight (4 bits, group size a multiple of 32).
bool affine_i8_supported(const AffineWeight& w);
// False when the environment has LMLAB_INT8_DOT=0: 4-bit weights then take the int16 kernel as before (for
// before/after measurements in one build).
bool int8_dot_enabled();

namespace ref {
inline void quantize_i8(const float* x, int64_t n, int64_t cols, I8Activations& out) {
  quantize_blocks(x, n, cols, kI8Max, out);
}
inline void matmul_affine_i8(const AffineWeight& w, const I8Activations& x, float* y) {
  matmul_affine_blocks(w, x, y);
}
}  // namespace ref

namespace cpu {
inline void quantize_i8(const float* x, int64_t n, int64_t cols, I8Activations& out) {
  quantize_blocks(x, n, cols, kI8Max, out);
}
// AVX-512 VNNI (vpdpbusd, rows in lanes), AVX2 (vpmaddubsw; also AVX-512 CPUs without VNNI), scalar (the same
// integer dots on the hi and lo bytes); rows
// split over ThreadPool::global(). Requires affine_i8_supported(w).
void matmul_affine_i8(const AffineWeight& w, const I8Activations& x, float* y);
// Quantize a.x and multiply: the drop-in for matmul_affine when affine_i8_supported(a.w).
void matmul_affine_int8(const MatmulAffineArgs& a);
// The same kernel on weights repacked at load into 16-row panels (affine_panels.h): bit-identical results on each
// ISA path, without the per-call 16 x 16 transposes and scale tables. y: [n, rows].
void matmul_affine_i8_panels(const AffinePanels& w, const I8Activations& x, float* y);
void matmul_affine_int8_panels(const AffinePanels& w, const float* x, float* y, int64_t n);
}  // namespace cpu

}  // namespace lmlab::kernels
