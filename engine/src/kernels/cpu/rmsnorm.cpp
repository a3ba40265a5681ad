// Optimised RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, rows split across threads.
// The sum of squares is accumulated in double (as the reference does) from f32 lanes, so the scale matches
// the reference to the last bit in all but rare rounding ties; the output is (x * inv) * w in f32.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

float inv_rms(double ss, int64_t dim, float eps) {
  return static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
}

void row_scalar(const float* x, const float* w, float* y, int64_t dim, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = inv_rms(ss, dim, eps);
  for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * inv * w[i];
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 void row_avx512(const float* x, const float* w, float* y, int64_t dim, float eps) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < dim; i += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, dim - i));
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
  }
  const __m512 inv = _mm512_set1_ps(inv_rms(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), dim, eps));
  for (int64_t i = 0; i < dim; i += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, dim - i));
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv), _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

LMLAB_TARGET_AVX2 void row_avx2(const float* x, const float* w, float* y, int64_t dim, float eps) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  alignas(32) double part[4];
  _mm256_store_pd(part, _mm256_add_pd(s0, s1));
  double ss = (part[0] + part[1]) + (part[2] + part[3]);
  for (int64_t j = i; j < dim; ++j) ss += static_cast<double>(x[j]) * x[j];
  const float inv_s = inv_rms(ss, dim, eps);
  const __m256 inv = _mm256_set1_ps(inv_s);
  for (i = 0; i + 8 <= dim; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv), _mm256_loadu_ps(w + i)));
  for (; i < dim; ++i) y[i] = x[i] * inv_s * w[i];
}
#endif

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps) {
  if (n_rows <= 0 || dim <= 0) return;
  auto* row = &row_scalar;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) row = &row_avx512;
  else if (isa == Isa::avx2) row = &row_avx2;
#endif
  ThreadPool::global().parallel_for(
      n_rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) row(x + r * dim, w, y + r * dim, dim, eps);
      },
      std::max<int64_t>(1, 32768 / dim));
}

}  // namespace lmlab::kernels::cpu
