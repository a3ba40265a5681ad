// Optimised rotary embedding (rotate_half layout, see kernels.h). Tokens are split across threads; for each
// token the cos / sin of its rot_dim/2 angles are computed once (double precision, exactly as the reference;
// or taken from a rope_table() shared by a forward's layers) and applied to every head with vector multiplies (GCC may fuse them into FMAs in the vector paths, so
// those can differ from the reference by an ulp).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

// x [n_heads, head_dim] of one token; cs = [cos[half], sin[half]].
using RotateFn = void (*)(float* x, int64_t n_heads, int64_t head_dim, int64_t half, const float* cs);

void rotate_scalar(float* x, int64_t n_heads, int64_t head_dim, int64_t half, const float* cs) {
  const float *c = cs, *s = cs + half;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c[i] - x1 * s[i];
      xh[i + half] = x1 * c[i] + x0 * s[i];
    }
  }
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 void rotate_avx512(float* x, int64_t n_heads, int64_t head_dim, int64_t half, const float* cs) {
  const float *c = cs, *s = cs + half;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; i += 16) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, half - i));
      const __m512 x0 = _mm512_maskz_loadu_ps(m, xh + i), x1 = _mm512_maskz_loadu_ps(m, xh + half + i);
      const __m512 cv = _mm512_maskz_loadu_ps(m, c + i), sv = _mm512_maskz_loadu_ps(m, s + i);
      _mm512_mask_storeu_ps(xh + i, m, _mm512_sub_ps(_mm512_mul_ps(x0, cv), _mm512_mul_ps(x1, sv)));
      _mm512_mask_storeu_ps(xh + half + i, m, _mm512_add_ps(_mm512_mul_ps(x1, cv), _mm512_mul_ps(x0, sv)));
    }
  }
}

LMLAB_TARGET_AVX2 void rotate_avx2(float* x, int64_t n_heads, int64_t head_dim, int64_t half, const float* cs) {
  const float *c = cs, *s = cs + half;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
      const __m256 x0 = _mm256_loadu_ps(xh + i), x1 = _mm256_loadu_ps(xh + half + i);
      const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
      _mm256_storeu_ps(xh + i, _mm256_sub_ps(_mm256_mul_ps(x0, cv), _mm256_mul_ps(x1, sv)));
      _mm256_storeu_ps(xh + half + i, _mm256_add_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x0, sv)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c[i] - x1 * s[i];
      xh[i + half] = x1 * c[i] + x0 * s[i];
    }
  }
}
#endif

// Token t's [cos[half], sin[half]], as the reference computes them.
void angles(const RopeArgs& a, int64_t t, int64_t half, float* cs) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(a.positions[t]) * a.inv_freq[i];
    cs[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * a.attention_scaling;
    cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * a.attention_scaling;
  }
}

}  // namespace

void rope_table(const RopeArgs& a, float* cos_sin) {
  const int64_t half = a.rot_dim / 2;
  if (a.n_tokens <= 0 || half <= 0) return;
  ThreadPool::global().parallel_for(
      a.n_tokens,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) angles(a, t, half, cos_sin + t * 2 * half);
      },
      std::max<int64_t>(1, 1024 / half));
}

void rope(const RopeArgs& a) {
  const int64_t half = a.rot_dim / 2;
  if (a.n_tokens <= 0 || half <= 0) return;
  RotateFn rotate = &rotate_scalar;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) rotate = &rotate_avx512;
  else if (isa == Isa::avx2) rotate = &rotate_avx2;
#endif
  ThreadPool::global().parallel_for(
      a.n_tokens,
      [&](int64_t t0, int64_t t1) {
        std::vector<float> cs(a.cos_sin ? 0 : static_cast<size_t>(2 * half));  // [cos[half], sin[half]]
        for (int64_t t = t0; t < t1; ++t) {
          const float* c = a.cos_sin ? a.cos_sin + t * 2 * half : cs.data();
          if (!a.cos_sin) angles(a, t, half, cs.data());
          rotate(a.x + t * a.n_heads * a.head_dim, a.n_heads, a.head_dim, half, c);
        }
      },
      std::max<int64_t>(1, 8192 / std::max<int64_t>(1, a.n_heads * a.head_dim)));
}

}  // namespace lmlab::kernels::cpu
