// The prefill GEMM of large bf16 / f16 ("half") matrices on integer dot products (AVX-512 VNNI `vpdpwssd`), part of
// cpu::matmul (matmul.cpp takes it when MatmulArgs::int16_prefill is set; weights/linear_dense.cpp sets it on
// matrices of at least 2^20 weights).
// Y[n, rows] = X[n, cols] . W[rows, cols]^T for bf16 or f16 W, f32 X and Y.
//
// Why: the exact GEMM (matmul_bf16.h) keeps x as bf16 hi + lo, two `vdpbf16ps` per 32 multiply-adds, the f32 FMA
// rate; x rounded to bf16 alone (llama.cpp) is twice as fast but moves the golden logits past their 2e-2 bound.
// Here both operands become 14-bit integers and one `vpdpwssd` (the same issue rate as `vdpbf16ps` on Zen 5) does
// 32 multiply-adds, with error between the two:
//   x per token and block of 32 columns, as X is packed: |x - xd xq| <= amax / 16382 (a block holding an infinity
//     or NaN makes its token's outputs NaN);
//   W per row and reduction block of 256 columns, quantized as it is packed: |w - wd wq| <= amax / 16382;
//   a block of 32 columns sums to at most 32 * 8191^2 < 2^31 in int32, then joins an f32 sum scaled by xd; each
//     reduction block's sum is scaled by wd into Y.
// Measured on the golden fixtures with every matrix on this arithmetic: max |dlogit| 1.4e-3 to 3.4e-3 (bound 2e-2),
// greedy tokens identical; the bf16 hi + lo GEMM has 3e-5 to 7e-5, x rounded to bf16 2e-2 to 4e-2
// (docs/measurements.md). Small matrices (every fixture matrix but the output heads), the output head and MoE routers
// keep the exact kernels (Linear::keep_prefill_exact). f16 weights had no faster prefill than the f32 FMA tiles.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

// The avx512 tier active with VNNI (the kernel uses no AVX512_BF16 instruction: Ice Lake and Cascade Lake have it).
bool half_i16_gemm_available();

// True when matmul(a) runs matmul_half_i16: half_i16_gemm_available(), a.int16_prefill, bf16 or f16 weights,
// n >= kBf16GemmMinTokens and cols a multiple of 32.
bool matmul_uses_half_i16(const MatmulArgs& a);

// The GEMM itself, any n >= 1 (tests call it directly); requires has_avx512_vnni(), a.type bf16 or f16 and
// a.cols % 32 == 0.
void matmul_half_i16(const MatmulArgs& a);

}  // namespace lmlab::kernels::cpu
