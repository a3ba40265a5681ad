// Block-quantized activations, vectorised (block_activations.h): the same f32 operations as the reference, so the
// results are bit-identical to it on every ISA.
#include "kernels/block_activations.h"

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"

namespace lmlab::kernels::cpu {

namespace {

#if LMLAB_X86
LMLAB_TARGET_AVX512 void quantize_avx512(const float* x, int64_t blocks, float qmax, int16_t* q, float* d, int32_t* sums) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t b = 0; b < blocks; ++b, x += kActivationBlock, q += kActivationBlock) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? qmax / amax : 0.0f);
    // cvtps rounds to nearest even (the default MXCSR), as nearbyint in the reference; |q| <= qmax <= 32767, so the
    // truncating narrow to int16 is exact.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm512_cvtepi32_epi16(q0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 16), _mm512_cvtepi32_epi16(q1));
    d[b] = amax / qmax;
    sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}

LMLAB_TARGET_AVX2 void quantize_avx2(const float* x, int64_t blocks, float qmax, int16_t* q, float* d, int32_t* sums) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < blocks; ++b, x += kActivationBlock, q += kActivationBlock) {
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    const float amax = simd::hmax8(m);
    const __m256 inv = _mm256_set1_ps(amax > 0.0f ? qmax / amax : 0.0f);
    __m256i qi[4];
    for (int i = 0; i < 4; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
    // packs (exact: |q| <= qmax <= 32767) interleaves the 128-bit lanes of its two inputs; the permute undoes it.
    for (int i = 0; i < 2; ++i)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 16 * i),
                          _mm256_permute4x64_epi64(_mm256_packs_epi32(qi[2 * i], qi[2 * i + 1]), 0xd8));
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    d[b] = amax / qmax;
    sums[b] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xb1)));
  }
}
#endif

}  // namespace

void quantize_blocks(const float* x, int64_t n, int64_t cols, int32_t qmax, BlockActivations& out) {
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa != Isa::scalar) {
    const int64_t blocks = n * (cols / kActivationBlock);
    out.n = n;
    out.cols = cols;
    out.q.resize(static_cast<size_t>(n * cols));
    out.d.resize(static_cast<size_t>(blocks));
    out.sums.resize(static_cast<size_t>(blocks));
    const float fq = static_cast<float>(qmax);
    if (isa == Isa::avx512) quantize_avx512(x, blocks, fq, out.q.data(), out.d.data(), out.sums.data());
    else quantize_avx2(x, blocks, fq, out.q.data(), out.d.data(), out.sums.data());
    return;
  }
#endif
  ref::quantize_blocks(x, n, cols, qmax, out);
}

}  // namespace lmlab::kernels::cpu
