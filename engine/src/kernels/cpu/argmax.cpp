// The index of the largest of n floats, the first of equal ones; NaNs never win, and all NaN gives 0: the greedy
// pick of generate/sampler.cpp over a vocabulary's logits. Two vector passes: the largest number (max with the
// running maximum second, so a NaN element leaves it), then the first index holding it. The one scalar pass with a
// running index before made every element wait on the last comparison's select through a reload of the best value:
// over 151,936 logits 120 us of CPU time against 12 us (lmlab_bench BM_pick_greedy_loop / BM_pick_greedy, the dev
// VM), time a GPU decode step idles for.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr float kLowest = -std::numeric_limits<float>::infinity();

// The first index of m in x (none: 0, every element NaN).
int64_t first_index_of(const float* x, int64_t from, int64_t n, float m) {
  for (int64_t i = from; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

int64_t argmax_scalar(const float* x, int64_t n) {
  float m[4] = {kLowest, kLowest, kLowest, kLowest};  // four independent chains
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  return first_index_of(x, 0, n, std::max(std::max(m[0], m[1]), std::max(m[2], m[3])));
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 int64_t argmax_avx512(const float* x, int64_t n) {
  __m512 mv = _mm512_set1_ps(kLowest);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    mv = _mm512_mask_max_ps(mv, k, _mm512_maskz_loadu_ps(k, x + i), mv);  // NaN elements keep mv
  }
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    const unsigned eq = _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, x + i), m, _CMP_EQ_OQ);
    if (eq) return i + std::countr_zero(eq);
  }
  return 0;
}

LMLAB_TARGET_AVX2 int64_t argmax_avx2(const float* x, int64_t n) {
  __m256 mv = _mm256_set1_ps(kLowest);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(_mm256_loadu_ps(x + i), mv);  // NaN elements keep mv
  float m = simd::hmax8(mv);
  for (int64_t j = i; j < n; ++j) m = x[j] > m ? x[j] : m;
  const __m256 mb = _mm256_set1_ps(m);
  for (i = 0; i + 8 <= n; i += 8) {
    const unsigned eq = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mb, _CMP_EQ_OQ)));
    if (eq) return i + std::countr_zero(eq);
  }
  return first_index_of(x, i, n, m);
}
#endif

}  // namespace

int64_t argmax(const float* x, int64_t n) {
  if (n <= 0) return 0;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) return argmax_avx512(x, n);
  if (isa == Isa::avx2) return argmax_avx2(x, n);
#endif
  return argmax_scalar(x, n);
}

}  // namespace lmlab::kernels::cpu
