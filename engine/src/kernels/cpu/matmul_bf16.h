// The bf16-weight prefill GEMM on AVX512_BF16 (vdpbf16ps), part of cpu::matmul (matmul.cpp dispatches to it).
// Y[n, rows] = X[n, cols] . W[rows, cols]^T for bf16 W, f32 X and Y, f32 accumulation.
//
// X is split once per call into x = hi + lo, hi = bf16(x), lo = bf16(x - hi) (x - hi is exact in f32), which
// keeps x to 2^-16 relative (|x - hi - lo| <= 2^-8 |x - hi| <= 2^-16 |x|); W is exactly bf16, so the two dot
// products W.hi + W.lo into one f32 accumulator give W.x as f32 FMAs on a 16-bit-mantissa x would. Rounding x
// to bf16 alone (llama.cpp's choice) moves the golden logits past their bound (docs/measurements.md).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

// Fewest tokens for which matmul() takes the bf16 GEMM: below, packing W per call costs more than the dot
// products save (one core, 2048 x 2048: 0.94x the FMA path at 32 tokens, 0.97x at 64, 1.21x at 512).
constexpr int64_t kBf16GemmMinTokens = 64;

// True when matmul(a) runs matmul_bf16_gemm: bf16 weights, n >= kBf16GemmMinTokens, the avx512 tier active
// and avx512_bf16_enabled(). Tests use it to pick the tolerance (tests/tolerance.h, bf16x2_activation_tolerance).
bool matmul_uses_bf16_gemm(const MatmulArgs& a);

// The GEMM itself, any n >= 1 (tests call it directly); requires has_avx512_bf16() and a.type == bf16.
void matmul_bf16_gemm(const MatmulArgs& a);

}  // namespace lmlab::kernels::cpu
