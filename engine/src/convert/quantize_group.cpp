// See quantize_group.h. group_errors puts candidates in the vector lanes; group_stats and group_levels, one
// fit at a time, put weights in the lanes.
#include "convert/quantize_group.h"

#include <algorithm>
#include <limits>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"

namespace lmlab {

namespace {

using kernels::cpu::Isa;

inline float inverse(float s) { return s != 0.0f ? 1.0f / s : 0.0f; }

// ---- scalar ----
// x in [0, 2^22): adding 1.5 * 2^23 leaves no fraction bits, so the FPU rounds half to even, as nearbyint.
// Not folded away: the library is built without -ffast-math.
// wb = w - b.
inline float level(float wb, float inv, float n_bins) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float x = std::clamp(wb * inv, 0.0f, n_bins);
  return (x + kMagic) - kMagic;
}

void errors_scalar(const float* w, int n, float n_bins, const float* s, const float* b, int k, float* err) {
  for (int j = 0; j < k; ++j) {
    const float inv = inverse(s[j]);
    float acc[8] = {};  // several accumulators: independent chains, and the loop vectorizes without -ffast-math
    for (int i = 0; i < n; i += 8)
      for (int l = 0; l < 8; ++l) {
        const float wb = w[i + l] - b[j], d = s[j] * level(wb, inv, n_bins) - wb;
        acc[l] += d * d;
      }
    float e = 0;
    for (float a : acc) e += a;
    err[j] = e;
  }
}

GroupStats stats_scalar(const float* w, int n, float n_bins, float s, float b) {
  const float inv = inverse(s);
  float e[8] = {}, q1[8] = {}, qq[8] = {}, qw[8] = {}, w1[8] = {};
  for (int i = 0; i < n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float wb = w[i + l] - b, q = level(wb, inv, n_bins), d = s * q - wb;
      e[l] += d * d, q1[l] += q, qq[l] += q * q, qw[l] += q * w[i + l], w1[l] += w[i + l];
    }
  GroupStats st;
  for (int l = 0; l < 8; ++l)
    st.err += e[l], st.sum_q += q1[l], st.sum_qq += qq[l], st.sum_qw += qw[l], st.sum_w += w1[l];
  return st;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

int first_min_scalar(const float* v, int k) {
  float best = kInf;
  int at = -1;
  for (int j = 0; j < k; ++j)
    if (v[j] < best) best = v[j], at = j;
  return at;
}

// Levels divide, as the reference does (one division per weight, once per group, is cheap here), so the same
// fit gives the reference's levels exactly; the search's reciprocal can differ only at a near-tie.
inline float level_div(float wb, float s, float n_bins) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float x = s != 0.0f ? std::clamp(wb / s, 0.0f, n_bins) : 0.0f;
  return (x + kMagic) - kMagic;
}

void levels_scalar(const float* w, int n, float n_bins, float s, float b, uint8_t* q) {
  for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(level_div(w[i] - b, s, n_bins));
}

#if LMLAB_X86
// ---- AVX-512 ----
// wb = w - b; the error is then s * q - wb, one fused op.
LMLAB_TARGET_AVX512 inline __m512 level512(__m512 wb, __m512 inv, __m512 n_bins) {
  const __m512 x = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(wb, inv), _mm512_setzero_ps()), n_bins);
  return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// Lanes are candidates: 16 fits per vector and 4 vectors per pass (independent accumulator chains), the
// group's weights broadcast one at a time, so no horizontal sums and no per-candidate scalar division.
inline int lanes_left(int k, int j) { return std::clamp(k - j, 0, 16); }

LMLAB_TARGET_AVX512 void errors_avx512(const float* w, int n, float n_bins, const float* s, const float* b, int k,
                                       float* err) {
  constexpr int kV = 4;
  const __m512 hi = _mm512_set1_ps(n_bins), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int j = 0; j < k; j += 16 * kV) {
    __mmask16 m[kV];
    __m512 sv[kV], bv[kV], iv[kV], acc[kV];
    for (int v = 0; v < kV; ++v) {
      m[v] = kernels::cpu::simd::tail_mask16(lanes_left(k, j + 16 * v));
      sv[v] = _mm512_maskz_loadu_ps(m[v], s + j + 16 * v);
      bv[v] = _mm512_maskz_loadu_ps(m[v], b + j + 16 * v);
      iv[v] = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(sv[v], zero, _CMP_NEQ_OQ), one, sv[v]);  // 1/s, 0 at s = 0
      acc[v] = zero;
    }
    for (int i = 0; i < n; ++i) {
      const __m512 wv = _mm512_set1_ps(w[i]);
      for (int v = 0; v < kV; ++v) {
        const __m512 wb = _mm512_sub_ps(wv, bv[v]), d = _mm512_fmsub_ps(sv[v], level512(wb, iv[v], hi), wb);
        acc[v] = _mm512_fmadd_ps(d, d, acc[v]);
      }
    }
    for (int v = 0; v < kV; ++v) _mm512_mask_storeu_ps(err + j + 16 * v, m[v], acc[v]);
  }
}

LMLAB_TARGET_AVX512 GroupStats stats_avx512(const float* w, int n, float n_bins, float s, float b) {
  const __m512 sv = _mm512_set1_ps(s), bv = _mm512_set1_ps(b), iv = _mm512_set1_ps(inverse(s));
  const __m512 hi = _mm512_set1_ps(n_bins);
  __m512 e = _mm512_setzero_ps(), q1 = e, qq = e, qw = e, w1 = e;
  for (int i = 0; i < n; i += 16) {
    const __m512 wv = _mm512_loadu_ps(w + i), wb = _mm512_sub_ps(wv, bv), q = level512(wb, iv, hi);
    const __m512 d = _mm512_fmsub_ps(sv, q, wb);
    e = _mm512_fmadd_ps(d, d, e);
    q1 = _mm512_add_ps(q1, q);
    qq = _mm512_fmadd_ps(q, q, qq);
    qw = _mm512_fmadd_ps(q, wv, qw);
    w1 = _mm512_add_ps(w1, wv);
  }
  return {_mm512_reduce_add_ps(e), _mm512_reduce_add_ps(q1), _mm512_reduce_add_ps(qq), _mm512_reduce_add_ps(qw),
          _mm512_reduce_add_ps(w1)};
}

LMLAB_TARGET_AVX512 void levels_avx512(const float* w, int n, float n_bins, float s, float b, uint8_t* q) {
  if (s == 0.0f) return levels_scalar(w, n, n_bins, s, b, q);
  const __m512 bv = _mm512_set1_ps(b), sv = _mm512_set1_ps(s), hi = _mm512_set1_ps(n_bins);
  for (int i = 0; i < n; i += 16) {
    const __m512 x = _mm512_div_ps(_mm512_sub_ps(_mm512_loadu_ps(w + i), bv), sv);
    const __m512 level = _mm512_roundscale_ps(_mm512_min_ps(_mm512_max_ps(x, _mm512_setzero_ps()), hi),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(level)));
  }
}

// The minimum over all lanes, then the first lane equal to it: no scan with a data-dependent exit.
LMLAB_TARGET_AVX512 int first_min_avx512(const float* v, int k) {
  const __m512 inf = _mm512_set1_ps(kInf);
  __m512 m = inf;
  for (int j = 0; j < k; j += 16)
    m = _mm512_min_ps(m, _mm512_mask_loadu_ps(inf, kernels::cpu::simd::tail_mask16(lanes_left(k, j)), v + j));
  const float best = _mm512_reduce_min_ps(m);
  if (!(best < kInf)) return -1;
  const __m512 bv = _mm512_set1_ps(best);
  for (int j = 0; j < k; j += 16) {
    const __m512 x = _mm512_mask_loadu_ps(inf, kernels::cpu::simd::tail_mask16(lanes_left(k, j)), v + j);
    if (const __mmask16 eq = _mm512_cmp_ps_mask(x, bv, _CMP_EQ_OQ)) return j + __builtin_ctz(eq);
  }
  return -1;
}

// ---- AVX2 ----
LMLAB_TARGET_AVX2 inline __m256 level256(__m256 wb, __m256 inv, __m256 n_bins) {
  const __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(wb, inv), _mm256_setzero_ps()), n_bins);
  return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// As errors_avx512, 8 candidates per vector.
LMLAB_TARGET_AVX2 void errors_avx2(const float* w, int n, float n_bins, const float* s, const float* b, int k,
                                   float* err) {
  constexpr int kV = 4;
  const __m256 hi = _mm256_set1_ps(n_bins), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int j = 0; j < k; j += 8 * kV) {
    __m256i m[kV];
    __m256 sv[kV], bv[kV], iv[kV], acc[kV];
    for (int v = 0; v < kV; ++v) {
      m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(k - j - 8 * v), lane);
      sv[v] = _mm256_maskload_ps(s + j + 8 * v, m[v]);
      bv[v] = _mm256_maskload_ps(b + j + 8 * v, m[v]);
      iv[v] = _mm256_and_ps(_mm256_div_ps(one, sv[v]), _mm256_cmp_ps(sv[v], zero, _CMP_NEQ_OQ));  // 1/s, 0 at s = 0
      acc[v] = zero;
    }
    for (int i = 0; i < n; ++i) {
      const __m256 wv = _mm256_set1_ps(w[i]);
      for (int v = 0; v < kV; ++v) {
        const __m256 wb = _mm256_sub_ps(wv, bv[v]), d = _mm256_fmsub_ps(sv[v], level256(wb, iv[v], hi), wb);
        acc[v] = _mm256_fmadd_ps(d, d, acc[v]);
      }
    }
    for (int v = 0; v < kV; ++v) _mm256_maskstore_ps(err + j + 8 * v, m[v], acc[v]);
  }
}

LMLAB_TARGET_AVX2 GroupStats stats_avx2(const float* w, int n, float n_bins, float s, float b) {
  const __m256 sv = _mm256_set1_ps(s), bv = _mm256_set1_ps(b), iv = _mm256_set1_ps(inverse(s));
  const __m256 hi = _mm256_set1_ps(n_bins);
  __m256 e = _mm256_setzero_ps(), q1 = e, qq = e, qw = e, w1 = e;
  for (int i = 0; i < n; i += 8) {
    const __m256 wv = _mm256_loadu_ps(w + i), wb = _mm256_sub_ps(wv, bv), q = level256(wb, iv, hi);
    const __m256 d = _mm256_fmsub_ps(sv, q, wb);
    e = _mm256_fmadd_ps(d, d, e);
    q1 = _mm256_add_ps(q1, q);
    qq = _mm256_fmadd_ps(q, q, qq);
    qw = _mm256_fmadd_ps(q, wv, qw);
    w1 = _mm256_add_ps(w1, wv);
  }
  using kernels::cpu::simd::hsum8;
  return {hsum8(e), hsum8(q1), hsum8(qq), hsum8(qw), hsum8(w1)};
}
#endif

}  // namespace

void group_errors(const float* w, int n, float n_bins, const float* s, const float* b, int k, float* err) {
#if LMLAB_X86
  const Isa isa = kernels::cpu::active_isa();
  if (isa == Isa::avx512) return errors_avx512(w, n, n_bins, s, b, k, err);
  if (isa == Isa::avx2) return errors_avx2(w, n, n_bins, s, b, k, err);
#endif
  errors_scalar(w, n, n_bins, s, b, k, err);
}

GroupStats group_stats(const float* w, int n, float n_bins, float s, float b) {
#if LMLAB_X86
  const Isa isa = kernels::cpu::active_isa();
  if (isa == Isa::avx512) return stats_avx512(w, n, n_bins, s, b);
  if (isa == Isa::avx2) return stats_avx2(w, n, n_bins, s, b);
#endif
  return stats_scalar(w, n, n_bins, s, b);
}

int first_min(const float* v, int k) {
#if LMLAB_X86
  if (kernels::cpu::active_isa() == Isa::avx512) return first_min_avx512(v, k);
#endif
  return first_min_scalar(v, k);
}

// Levels are the same on every path (same operations, exact rounding); AVX2 takes the scalar loop.
void group_levels(const float* w, int n, float n_bins, float s, float b, uint8_t* q) {
#if LMLAB_X86
  if (kernels::cpu::active_isa() == Isa::avx512) return levels_avx512(w, n, n_bins, s, b, q);
#endif
  levels_scalar(w, n, n_bins, s, b, q);
}

}  // namespace lmlab
