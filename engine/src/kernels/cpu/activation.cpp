// Optimised gated activations, element-wise over n values split across threads:
//   silu_mul:      out = g / (1 + e^-g) * up
//   gelu_tanh_mul: out = gelu_tanh(g) * up, with 0.5 * (1 + tanh(u)) rewritten as 1 / (1 + e^(-2u)),
//                  u = sqrt(2/pi) * (g + 0.044715 g^3): the same function without the cancellation of
//                  1 + tanh(u) for negative u, and only one exp (vector polynomial, see simd.h).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
constexpr int64_t kMinChunk = 16384;  // elements per thread hand-off

using ActFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

void silu_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = kSqrt2OverPi * (g + kGeluCubic * g * g * g);
    out[i] = g / (1.0f + std::exp(-2.0f * u)) * up[i];
  }
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 void silu_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    const __m512 e = simd::exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(k, up + i)));
  }
}

LMLAB_TARGET_AVX512 void gelu_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f), c = _mm512_set1_ps(kGeluCubic), m2k = _mm512_set1_ps(-2.0f * kSqrt2OverPi);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - i));
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    const __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(c, g), _mm512_mul_ps(g, g), g);  // g + 0.044715 g^3
    const __m512 e = simd::exp512(_mm512_mul_ps(m2k, inner));
    _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(k, up + i)));
  }
}

LMLAB_TARGET_AVX2 void silu_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = simd::exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  silu_scalar(gate + i, up + i, out + i, n - i);
}

LMLAB_TARGET_AVX2 void gelu_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(kGeluCubic), m2k = _mm256_set1_ps(-2.0f * kSqrt2OverPi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(c, g), _mm256_mul_ps(g, g), g);
    const __m256 e = simd::exp256(_mm256_mul_ps(m2k, inner));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  gelu_scalar(gate + i, up + i, out + i, n - i);
}
#endif

void run(ActFn fn, const float* gate, const float* up, float* out, int64_t n) {
  if (n <= 0) return;
  ThreadPool::global().parallel_for(
      n, [&](int64_t i0, int64_t i1) { fn(gate + i0, up + i0, out + i0, i1 - i0); }, kMinChunk);
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  ActFn fn = &silu_scalar;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) fn = &silu_avx512;
  else if (isa == Isa::avx2) fn = &silu_avx2;
#endif
  run(fn, gate, up, out, n);
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  ActFn fn = &gelu_scalar;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) fn = &gelu_avx512;
  else if (isa == Isa::avx2) fn = &gelu_avx2;
#endif
  run(fn, gate, up, out, n);
}

}  // namespace lmlab::kernels::cpu
