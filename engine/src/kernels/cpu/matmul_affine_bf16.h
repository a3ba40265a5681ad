// The MLX affine (4- and 8-bit) prefill GEMM on AVX512_BF16 (vdpbf16ps); ref::matmul_affine is its reference.
// Y[n, rows] = X[n, cols] . W^T with W[r, c] = s[r, g] * q[r, c] + b[r, g] (kernels/matmul_affine.h).
//
// The integer levels q (< 256) are exact in bf16 (8 significant bits), so a dequantized copy is never needed:
//   y[r] = sum_g s[r, g] * (sum_{c in g} q[r, c] x[c]) + sum_g b[r, g] * (sum_{c in g} x[c]),
// the inner sums on vdpbf16ps with x = hi + lo as in the bf16 GEMM (matmul_bf16.h: x kept to 2^-16 relative),
// the group sums of x in f32 from x itself. The error is the bf16 GEMM's (tests/tolerance.h,
// bf16x2_activation_tolerance); the int16 activations of the decode kernel are not used here because they move
// prefill NLL (docs/quantization.md).
#pragma once

#include <cstdint>

#include "kernels/matmul_affine.h"

namespace lmlab::kernels::cpu {

// Fewest tokens for the GEMM (as kBf16GemmMinTokens: below, the per-call unpacking of W into bf16 panels costs
// more than the dot products save).
constexpr int64_t kAffineBf16MinTokens = 64;

// The weight's shape suits the kernel: 4 or 8 bits, a group of 32, 64, 128 or 256 values.
bool matmul_affine_bf16_supported(const AffineWeight& w);

// True when a prefill call should take matmul_affine_bf16: supported weight, n >= kAffineBf16MinTokens, the
// avx512 tier active and avx512_bf16_enabled() (LMLAB_BF16_DOT=0 switches it off).
bool matmul_affine_uses_bf16_gemm(const MatmulAffineArgs& a);

// The GEMM itself, any n >= 1 (tests call it directly); requires has_avx512_bf16() and a supported weight.
void matmul_affine_bf16(const MatmulAffineArgs& a);

}  // namespace lmlab::kernels::cpu
