// scaled_exp: the unnormalised weights of a temperature softmax, w[i] = e^((x[i] - m) scale), 0 where x[i] is NaN,
// and their sum: a sampled pick's one pass over the vocabulary (generate/sampler.cpp), by the vector exp of simd.h.
// The sum in double lanes: a draw scans the same weights in double, and float lanes of ~10K terms each would be
// ~1e-5 off, a bias toward the scan's last token.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

namespace {

double scaled_exp_scalar(const float* x, int64_t n, float m, float scale, float* w) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    w[i] = std::isnan(x[i]) ? 0.0f : std::exp((x[i] - m) * scale);
    sum += w[i];
  }
  return sum;
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 double scaled_exp_avx512(const float* x, int64_t n, float m, float scale, float* w) {
  const __m512 mv = _mm512_set1_ps(m), sv = _mm512_set1_ps(scale);
  __m512d sum = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __mmask16 number = _mm512_mask_cmp_ps_mask(k, v, v, _CMP_ORD_Q);  // not NaN (and in range)
    const __m512 e = _mm512_maskz_mov_ps(number, simd::exp512(_mm512_mul_ps(_mm512_sub_ps(v, mv), sv)));
    _mm512_mask_storeu_ps(w + i, k, e);
    sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  return _mm512_reduce_add_pd(sum);
}

LMLAB_TARGET_AVX2 double scaled_exp_avx2(const float* x, int64_t n, float m, float scale, float* w) {
  const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(scale);
  __m256d sum = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_ORD_Q),  // NaN lanes to 0
                                   simd::exp256(_mm256_mul_ps(_mm256_sub_ps(v, mv), sv)));
    _mm256_storeu_ps(w + i, e);
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(sum), _mm256_extractf128_pd(sum, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h))) + scaled_exp_scalar(x + i, n - i, m, scale, w + i);
}
#endif

}  // namespace

double scaled_exp(const float* x, int64_t n, float m, float scale, float* w) {
  if (n <= 0) return 0.0;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) return scaled_exp_avx512(x, n, m, scale, w);
  if (isa == Isa::avx2) return scaled_exp_avx2(x, n, m, scale, w);
#endif
  return scaled_exp_scalar(x, n, m, scale, w);
}

}  // namespace lmlab::kernels::cpu
