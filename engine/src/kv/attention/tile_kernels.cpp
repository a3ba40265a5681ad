// The tile kernels of the blocked attention (see tile_kernels.h), per ISA:
//   scores      s = Q . T^T over a tile, 4 query rows x 4 keys register-blocked (AVX-512).
//   accumulate  A = diag(alpha) A + P . T, 4 rows x 32 columns register-blocked (AVX-512).
//   exp_sum     e^(s - m), shared with the f32 attention (kernels/cpu/exp_sum.h).
//   max         the row maximum of the online softmax.
#include "kv/attention/tile_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/exp_sum.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"

namespace lmlab {

namespace {

using kernels::cpu::Isa;

// ------------------------------------------------------------------------------------------- scalar

void scores_scalar(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb, int64_t len,
                   float* s, int64_t lds) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t j = 0; j < nb; ++j) {
      const float* a = q + r * ldq;
      const float* b = t + j * ldt;
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
      for (int64_t i = 0; i < len; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
      }
      s[r * lds + j] = (s0 + s1) + (s2 + s3);
    }
}

void accumulate_scalar(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p, int64_t ldp,
                       const float* t, int64_t ldt, int64_t nb, int64_t len) {
  for (int64_t r = 0; r < nr; ++r) {
    float* a = acc + r * lda;
    if (alpha[r] != 1.0f)
      for (int64_t i = 0; i < len; ++i) a[i] *= alpha[r];
    for (int64_t j = 0; j < nb; ++j) {
      const float w = p[r * ldp + j];
      if (w == 0.0f) continue;
      const float* tj = t + j * ldt;
      for (int64_t i = 0; i < len; ++i) a[i] += w * tj[i];
    }
  }
}

float max_scalar(const float* s, int64_t n) {
  float m = s[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, s[j]);
  return m;
}

#if LMLAB_X86
namespace simd = kernels::cpu::simd;

// ------------------------------------------------------------------------------------------- AVX-512

template <int NR>
LMLAB_TARGET_AVX512 void scores_rows_avx512(const float* q, int64_t ldq, const float* t, int64_t ldt, int64_t nb,
                                            int64_t len, float* s, int64_t lds) {
  int64_t j = 0;
  for (; j + 4 <= nb; j += 4) {
    const float* t0 = t + j * ldt;
    __m512 acc[NR][4];
    for (int r = 0; r < NR; ++r)
      for (int k = 0; k < 4; ++k) acc[r][k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < len; i += 16) {
      const __m512 k0 = _mm512_loadu_ps(t0 + i), k1 = _mm512_loadu_ps(t0 + ldt + i);
      const __m512 k2 = _mm512_loadu_ps(t0 + 2 * ldt + i), k3 = _mm512_loadu_ps(t0 + 3 * ldt + i);
      for (int r = 0; r < NR; ++r) {
        const __m512 qv = _mm512_loadu_ps(q + r * ldq + i);
        acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(qv, k2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(qv, k3, acc[r][3]);
      }
    }
    for (int r = 0; r < NR; ++r)
      _mm_storeu_ps(s + r * lds + j, simd::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
  }
  for (; j < nb; ++j) {
    const float* tj = t + j * ldt;
    __m512 acc[NR];
    for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < len; i += 16) {
      const __m512 kv = _mm512_loadu_ps(tj + i);
      for (int r = 0; r < NR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + i), kv, acc[r]);
    }
    for (int r = 0; r < NR; ++r) s[r * lds + j] = _mm512_reduce_add_ps(acc[r]);
  }
}

LMLAB_TARGET_AVX512 void scores_avx512(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb,
                                       int64_t len, float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) scores_rows_avx512<4>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
  switch (nr - r) {
    case 3: scores_rows_avx512<3>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    case 2: scores_rows_avx512<2>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    case 1: scores_rows_avx512<1>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    default: break;
  }
}

template <int NR, int NC>  // NR rows x NC vectors of 16 columns
LMLAB_TARGET_AVX512 void accumulate_tile_avx512(float* acc, int64_t lda, const float* alpha, const float* p,
                                                int64_t ldp, const float* t, int64_t ldt, int64_t nb) {
  __m512 a[NR][NC];
  for (int r = 0; r < NR; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
    for (int c = 0; c < NC; ++c) a[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * lda + 16 * c), al);
  }
  for (int64_t j = 0; j < nb; ++j) {
    __m512 tv[NC];
    for (int c = 0; c < NC; ++c) tv[c] = _mm512_loadu_ps(t + j * ldt + 16 * c);
    for (int r = 0; r < NR; ++r) {
      const __m512 pj = _mm512_set1_ps(p[r * ldp + j]);
      for (int c = 0; c < NC; ++c) a[r][c] = _mm512_fmadd_ps(pj, tv[c], a[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(acc + r * lda + 16 * c, a[r][c]);
}

template <int NR>
LMLAB_TARGET_AVX512 void accumulate_rows_avx512(float* acc, int64_t lda, const float* alpha, const float* p,
                                                int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) accumulate_tile_avx512<NR, 2>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
  if (i < len) accumulate_tile_avx512<NR, 1>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
}

LMLAB_TARGET_AVX512 void accumulate_avx512(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p,
                                           int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4)
    accumulate_rows_avx512<4>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
  switch (nr - r) {
    case 3: accumulate_rows_avx512<3>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    case 2: accumulate_rows_avx512<2>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    case 1: accumulate_rows_avx512<1>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    default: break;
  }
}

LMLAB_TARGET_AVX512 float max_avx512(const float* s, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - j));
    m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, s + j));
  }
  return _mm512_reduce_max_ps(m);
}

// ------------------------------------------------------------------------------------------- AVX2

template <int NR>
LMLAB_TARGET_AVX2 void scores_rows_avx2(const float* q, int64_t ldq, const float* t, int64_t ldt, int64_t nb,
                                        int64_t len, float* s, int64_t lds) {
  int64_t j = 0;
  for (; j + 4 <= nb; j += 4) {
    const float* t0 = t + j * ldt;
    __m256 acc[NR][4];
    for (int r = 0; r < NR; ++r)
      for (int k = 0; k < 4; ++k) acc[r][k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < len; i += 8) {
      const __m256 k0 = _mm256_loadu_ps(t0 + i), k1 = _mm256_loadu_ps(t0 + ldt + i);
      const __m256 k2 = _mm256_loadu_ps(t0 + 2 * ldt + i), k3 = _mm256_loadu_ps(t0 + 3 * ldt + i);
      for (int r = 0; r < NR; ++r) {
        const __m256 qv = _mm256_loadu_ps(q + r * ldq + i);
        acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(qv, k2, acc[r][2]);
        acc[r][3] = _mm256_fmadd_ps(qv, k3, acc[r][3]);
      }
    }
    for (int r = 0; r < NR; ++r)
      _mm_storeu_ps(s + r * lds + j, simd::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
  }
  for (; j < nb; ++j) {
    const float* tj = t + j * ldt;
    __m256 acc[NR];
    for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < len; i += 8) {
      const __m256 kv = _mm256_loadu_ps(tj + i);
      for (int r = 0; r < NR; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + i), kv, acc[r]);
    }
    for (int r = 0; r < NR; ++r) s[r * lds + j] = simd::hsum8(acc[r]);
  }
}

LMLAB_TARGET_AVX2 void scores_avx2(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb,
                                   int64_t len, float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 2 <= nr; r += 2) scores_rows_avx2<2>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
  if (r < nr) scores_rows_avx2<1>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
}

template <int NR, int NC>
LMLAB_TARGET_AVX2 void accumulate_tile_avx2(float* acc, int64_t lda, const float* alpha, const float* p, int64_t ldp,
                                            const float* t, int64_t ldt, int64_t nb) {
  __m256 a[NR][NC];
  for (int r = 0; r < NR; ++r) {
    const __m256 al = _mm256_set1_ps(alpha[r]);
    for (int c = 0; c < NC; ++c) a[r][c] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * lda + 8 * c), al);
  }
  for (int64_t j = 0; j < nb; ++j) {
    __m256 tv[NC];
    for (int c = 0; c < NC; ++c) tv[c] = _mm256_loadu_ps(t + j * ldt + 8 * c);
    for (int r = 0; r < NR; ++r) {
      const __m256 pj = _mm256_set1_ps(p[r * ldp + j]);
      for (int c = 0; c < NC; ++c) a[r][c] = _mm256_fmadd_ps(pj, tv[c], a[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) _mm256_storeu_ps(acc + r * lda + 8 * c, a[r][c]);
}

template <int NR>
LMLAB_TARGET_AVX2 void accumulate_rows_avx2(float* acc, int64_t lda, const float* alpha, const float* p, int64_t ldp,
                                            const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) accumulate_tile_avx2<NR, 2>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
  if (i < len) accumulate_tile_avx2<NR, 1>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
}

LMLAB_TARGET_AVX2 void accumulate_avx2(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p,
                                       int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) accumulate_rows_avx2<4>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
  for (; r < nr; ++r) accumulate_rows_avx2<1>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
}

LMLAB_TARGET_AVX2 float max_avx2(const float* s, int64_t n) {
  if (n < 8) return max_scalar(s, n);
  __m256 m = _mm256_loadu_ps(s);
  int64_t j = 8;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
  const float r = simd::hmax8(m);
  return j < n ? std::max(r, max_scalar(s + j, n - j)) : r;
}
#endif  // LMLAB_X86

constexpr TileKernels kScalar{&scores_scalar, &accumulate_scalar, &kernels::cpu::simd::exp_sum_scalar, &max_scalar, "scalar"};
#if LMLAB_X86
constexpr TileKernels kAvx512{&scores_avx512, &accumulate_avx512, &simd::exp_sum_avx512, &max_avx512, "avx512"};
constexpr TileKernels kAvx2{&scores_avx2, &accumulate_avx2, &simd::exp_sum_avx2, &max_avx2, "avx2"};
#endif

}  // namespace

const TileKernels& tile_kernels() {
#if LMLAB_X86
  switch (kernels::cpu::active_isa()) {
    case Isa::avx512: return kAvx512;
    case Isa::avx2: return kAvx2;
    case Isa::scalar: break;
  }
#endif
  return kScalar;
}

}  // namespace lmlab
