// exp_sum: the online-softmax step shared by the f32 attention (kernels/cpu/attention.cpp) and
// the blocked KV attention (kv/attention/tile_kernels.cpp): s[j] = e^(s[j] - m) in place, returns the sum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.h"

namespace lmlab::kernels::cpu::simd {

inline float exp_sum_scalar(float* s, int64_t n, float m) {
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - m);
    sum += s[j];
  }
  return sum;
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 inline float exp_sum_avx512(float* s, int64_t n, float m) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = tail_mask16(std::min<int64_t>(16, n - j));
    const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), mv)));
    _mm512_mask_storeu_ps(s + j, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

LMLAB_TARGET_AVX2 inline float exp_sum_avx2(float* s, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  return hsum8(sum) + exp_sum_scalar(s + j, n - j, m);
}
#endif

}  // namespace lmlab::kernels::cpu::simd
