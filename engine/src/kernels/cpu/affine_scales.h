// Scales and biases of MLX affine weights (bf16 / f16 / f32 as stored) read inside the vector kernels of
// matmul_affine.cpp and matmul_affine_q8.cpp; each helper carries its callers' target (simd.h explains why).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine.h"
#include "util/half.h"

#if LMLAB_X86
namespace lmlab::kernels::cpu {

// Scale / bias i of a row, in the vector functions' targets (both include F16C).
template <ScaleType ST>
LMLAB_TARGET_AVX2 inline float scale_at(const void* p, int64_t i) {
  if constexpr (ST == ScaleType::f32) return static_cast<const float*>(p)[i];
  else if constexpr (ST == ScaleType::f16) return _cvtsh_ss(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

// Scales or biases [i, i + 16) as f32 (lanes outside m read nothing and are 0).
template <ScaleType ST>
LMLAB_TARGET_AVX512 inline __m512 load_scales16(const void* p, int64_t i, __mmask16 m) {
  if constexpr (ST == ScaleType::f32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i);
    if constexpr (ST == ScaleType::f16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// sum_g b[g] * xsum[g] over G groups: the bias term of one row.
template <ScaleType ST>
LMLAB_TARGET_AVX512 inline float bias_dot_avx512(const void* b, const float* xsum, int64_t G) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; g += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, G - g));
    acc = _mm512_fmadd_ps(load_scales16<ST>(b, g, m), _mm512_maskz_loadu_ps(m, xsum + g), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

template <ScaleType ST>
LMLAB_TARGET_AVX2 inline float bias_dot_avx2(const void* b, const float* xsum, int64_t G) {
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= G; g += 8) {
    __m256 bv;
    if constexpr (ST == ScaleType::f32) {
      bv = _mm256_loadu_ps(static_cast<const float*>(b) + g);
    } else {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(b) + g));
      if constexpr (ST == ScaleType::f16) bv = _mm256_cvtph_ps(h);
      else bv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    acc = _mm256_fmadd_ps(bv, _mm256_loadu_ps(xsum + g), acc);
  }
  float s = simd::hsum8(acc);
  for (; g < G; ++g) s += scale_at<ST>(b, g) * xsum[g];
  return s;
}

}  // namespace lmlab::kernels::cpu
#endif  // LMLAB_X86
