// Small vector helpers shared by the cpu:: kernels: horizontal sums and a vector exp.
// Every function carries the same target attribute as its callers (isa.h), so it inlines into them and
// never runs on a CPU that lacks the ISA. exp: Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, then the
// degree-7 Taylor polynomial of e^r (truncation < 6e-9 relative) and a 2^n scale; about 1 ulp over the
// normal range, +inf above 88.72, gradual underflow to 0 below -87.3, NaN in -> NaN out.
#pragma once

#include "kernels/cpu/isa.h"

#if LMLAB_X86
// GCC 12's AVX-512 headers build some intrinsics from self-initialised "undefined" vectors, which -Wall
// reports as uninitialised once inlined into target-attributed code; the warning is false, so it is
// silenced for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

namespace lmlab::kernels::cpu::simd {

inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;          // 9 significant bits: n * kLn2Hi is exact
inline constexpr float kLn2Lo = -2.12194440054690583e-4f;
inline constexpr float kExpHi = 89.0f;                 // e^89 > FLT_MAX: overflows to +inf below
inline constexpr float kExpLo = -104.0f;               // e^-104 < half the smallest subnormal
// 1/k! for k = 7..2; the k = 1, 0 terms are 1.
inline constexpr float kC7 = 1.0f / 5040, kC6 = 1.0f / 720, kC5 = 1.0f / 120, kC4 = 1.0f / 24, kC3 = 1.0f / 6,
                       kC2 = 0.5f;

// ---- AVX-512 ----
LMLAB_TARGET_AVX512 inline __m512 exp512(__m512 x) {
  // min/max return their second operand when either is NaN: x goes second so a NaN survives the clamp.
  x = _mm512_max_ps(_mm512_set1_ps(kExpLo), _mm512_min_ps(_mm512_set1_ps(kExpHi), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kC7);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);  // p * 2^n with correct overflow / subnormal handling
}

// [sum a0, sum a1, sum a2, sum a3]
LMLAB_TARGET_AVX512 inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
  const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
  const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
  const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

LMLAB_TARGET_AVX512 inline __mmask16 tail_mask16(int64_t k) { return static_cast<__mmask16>((1u << k) - 1u); }

// In place: r[i] lane a <- r[a] lane i, a 16 x 16 transpose of dwords (unpack 32-bit, then 64-bit pairs, then a
// 4 x 4 transpose of 128-bit lanes). Packs rows into lanes for the panel layouts (4-bit panels, the bf16 GEMMs).
LMLAB_TARGET_AVX512 inline void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int p = 0; p < 8; ++p) {
    t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // u[4q + m], 128-bit lane L: dword 4L + m of rows 4q .. 4q + 3.
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i vlo = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44), vhi = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xee);
    const __m512i wlo = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44), whi = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xee);
    r[m] = _mm512_shuffle_i32x4(vlo, wlo, 0x88);
    r[4 + m] = _mm512_shuffle_i32x4(vlo, wlo, 0xdd);
    r[8 + m] = _mm512_shuffle_i32x4(vhi, whi, 0x88);
    r[12 + m] = _mm512_shuffle_i32x4(vhi, whi, 0xdd);
  }
}

// ---- AVX2 ----
LMLAB_TARGET_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(kExpLo), _mm256_min_ps(_mm256_set1_ps(kExpHi), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kC7);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n as two normal factors 2^(n/2) * 2^(n - n/2): n in [-150, 128] keeps both exponents in range, and
  // the second multiply rounds into the subnormals or to +inf like the true result.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

LMLAB_TARGET_AVX2 inline float hsum8(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

LMLAB_TARGET_AVX2 inline float hmax8(__m256 a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// [sum a0, sum a1, sum a2, sum a3]
LMLAB_TARGET_AVX2 inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

}  // namespace lmlab::kernels::cpu::simd
#endif
