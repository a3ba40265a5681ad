// Optimised in-place softmax over one vector: max pass, exp pass (vector polynomial exp, see simd.h) that
// stores e^(x - max) and sums it in f32 lanes, then a scale by 1 / sum. Single-threaded: callers apply it
// to one row (sampling logits, router logits) and it is memory-bound.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

namespace {

void softmax_scalar(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 void softmax_avx512(float* x, int64_t n) {
  __m512 mv = _mm512_set1_ps(x[0]);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    mv = _mm512_mask_max_ps(mv, k, mv, _mm512_maskz_loadu_ps(k, x + i));
  }
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512 s0 = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    const __m512 e = _mm512_maskz_mov_ps(k, simd::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m)));
    _mm512_mask_storeu_ps(x + i, k, e);
    s0 = _mm512_add_ps(s0, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s0));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
  }
}

LMLAB_TARGET_AVX2 void softmax_avx2(float* x, int64_t n) {
  __m256 mv = _mm256_set1_ps(x[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  float m = simd::hmax8(mv);
  for (int64_t j = i; j < n; ++j) m = x[j] > m ? x[j] : m;
  const __m256 mb = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = simd::exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
    _mm256_storeu_ps(x + i, e);
    s0 = _mm256_add_ps(s0, e);
  }
  float sum = simd::hsum8(s0);
  for (int64_t j = i; j < n; ++j) {
    x[j] = std::exp(x[j] - m);
    sum += x[j];
  }
  const float inv_s = 1.0f / sum;
  const __m256 inv = _mm256_set1_ps(inv_s);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  for (; i < n; ++i) x[i] *= inv_s;
}
#endif

}  // namespace

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) return softmax_avx512(x, n);
  if (isa == Isa::avx2) return softmax_avx2(x, n);
#endif
  softmax_scalar(x, n);
}

}  // namespace lmlab::kernels::cpu
