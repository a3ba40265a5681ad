// The bf16-weight decode GEMV and prefill GEMM on AVX512_BF16 (vdpbf16ps), part of cpu::matmul (matmul.cpp
// dispatches to them).
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

// True when matmul(a) runs matmul_bf16_gemv (n == 1) or matmul_bf16_gemm (n >= kBf16GemmMinTokens): bf16 weights,
// the avx512 tier active and avx512_bf16_enabled() (LMLAB_BF16_DOT=0 switches both off). Tests use it to pick the
// tolerance (tests/tolerance.h, bf16x2_activation_tolerance).
bool matmul_uses_bf16_dot(const MatmulArgs& a);

// n == 1 (decode) on vdpbf16ps: x split once into hi + lo, the weight rows read in place, 4 side by side; half the
// instructions per weight byte of the f32 FMA GEMV (widen, shift, FMA per 16 weights), which lets more of the
// stream be in flight: the 0.9B bf16 synth decoded 19.6-22.1 vs 17.1-19.1 tok/s on the dev VM (3 interleaved pairs,
// docs/measurements.md). Requires has_avx512_bf16().
void matmul_bf16_gemv(const MatmulArgs& a);

// The GEMM itself, any n >= 1 (tests call it directly); requires has_avx512_bf16() and a.type == bf16.
void matmul_bf16_gemm(const MatmulArgs& a);

}  // namespace lmlab::kernels::cpu
