// What the two split-int8 kernels share (the row-layout one, matmul_affine_i8.cpp, and the panel one,
// matmul_affine_i8_panels.cpp): the activations packed once per call in the kernels' order, the broadcast dot,
// the 16 x 16 transpose (also the panel repack's) and the threading grain. Shared so that both compute with the
// same bytes and instructions (bit-identical).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine_i8.h"

namespace lmlab::kernels::cpu {

constexpr int64_t kChunkValues = 128;  // one 64-byte chunk of a packed 4-bit row: 4 activation blocks
constexpr int kI8MaxTokens = 8;        // tokens per tile (accumulators in registers)

// The activations in the kernels' order: per block of 32 values the 32 hi bytes then the 32 lo bytes
// (xq = 256 * hi + lo), each 8 values reordered 0 2 4 6 1 3 5 7 (the order of a packed word's low nibbles
// then its high nibbles), zero-padded to whole chunks.
struct Packed {
  int64_t chunks = 0, ldx = 0, nb = 0, G = 0;
  std::vector<int8_t> q;  // [n, ldx], ldx = chunks * 256
  std::vector<float> xg;  // [n, G]: X[g] = sum_{b in g} xd[b] * sums[b]
};

// Only on the vector paths (it splits with AVX2).
void pack_activations(int64_t cols, int64_t group_size, const I8Activations& x, Packed& p);

// Row blocks per parallel chunk: at least ~64K multiply-adds.
inline int64_t min_row_blocks(int64_t rows_per_block, int64_t cols, int64_t n) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, rows_per_block * cols * n));
}

#if LMLAB_X86
// 4 activation bytes read as one broadcast operand (may_alias: the buffer is int8).
typedef int32_t Quad __attribute__((may_alias, aligned(4)));

// acc + dot(w, broadcast *x) with the broadcast inside vpdpbusd's memory operand: one instruction where GCC
// emits a separate vpbroadcastd (16 instead of 8 per token, block and 16 rows).
LMLAB_TARGET_AVX512_VNNI inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const Quad* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
  return acc;
}

// One activation block b (32 values) of T tokens against 16 rows' codes, unpacked into the low / high nibbles of 4
// packed words per row (lo[i], hi[i]): acc[t] += sv * d[t nb + b] * (256 dot(q, xq hi bytes) + dot(q, xq lo bytes)),
// xq at its kernel order (Packed). The inner step of both kernels' tiles, so both run the same instructions.
template <int T>
LMLAB_TARGET_AVX512_VNNI inline void block_dot_vnni(const __m512i (&lo)[4], const __m512i (&hi)[4], const int8_t* xq,
                                                    int64_t ldx, int64_t b, __m512 sv, const float* d, int64_t nb,
                                                    __m512 (&acc)[T]) {
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    const auto* x4 = reinterpret_cast<const Quad*>(xq + t * ldx + b * 2 * kI8Block);  // 8 hi, then 8 lo quads
    __m512i ih = _mm512_setzero_si512(), il = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      ih = dpbusd_bcast(ih, lo[i], x4 + 2 * i);
      ih = dpbusd_bcast(ih, hi[i], x4 + 2 * i + 1);
      il = dpbusd_bcast(il, lo[i], x4 + 8 + 2 * i);
      il = dpbusd_bcast(il, hi[i], x4 + 8 + 2 * i + 1);
    }
    // 256 * hi dot + lo dot: |q . xq| <= 15 * 32639 * 32 < 2^31, exact.
    const __m512i ia = _mm512_add_epi32(_mm512_slli_epi32(ih, 8), il);
    const __m512 sd = _mm512_mul_ps(sv, _mm512_set1_ps(d[t * nb + b]));
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), sd, acc[t]);
  }
}

// The same for 8 rows on AVX2 (vpmaddubsw pairs summed in int16, then vpmaddwd by ones).
template <int T>
LMLAB_TARGET_AVX2 inline void block_dot_avx2(const __m256i (&lo)[4], const __m256i (&hi)[4], const int8_t* xq,
                                             int64_t ldx, int64_t b, __m256 sv, const float* d, int64_t nb,
                                             __m256 (&acc)[T]) {
  const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    const auto* x4 = reinterpret_cast<const Quad*>(xq + t * ldx + b * 2 * kI8Block);  // 8 hi, then 8 lo quads
    // vpmaddubsw pairs: at most 2 * 15 * 128 = 3840, so the 8 summed int16 stay below 32767.
    __m256i sh = _mm256_setzero_si256(), sl = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(lo[i], _mm256_set1_epi32(x4[2 * i])));
      sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(hi[i], _mm256_set1_epi32(x4[2 * i + 1])));
      sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(lo[i], _mm256_set1_epi32(x4[8 + 2 * i])));
      sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(hi[i], _mm256_set1_epi32(x4[8 + 2 * i + 1])));
    }
    const __m256i ia = _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(sh, ones), 8), _mm256_madd_epi16(sl, ones));
    const __m256 sd = _mm256_mul_ps(sv, _mm256_set1_ps(d[t * nb + b]));
    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), sd, acc[t]);
  }
}

// The first nr (<= 8) rows of each token's sums into y (AVX2 has no masked float store under 32 bits a lane).
template <int T>
LMLAB_TARGET_AVX2 inline void store_rows_avx2(const __m256 (&acc)[T], int nr, float* y, int64_t ldy) {
  alignas(32) float buf[8];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    _mm256_store_ps(buf, acc[t]);
    std::memcpy(y + t * ldy, buf, static_cast<size_t>(nr) * sizeof(float));
  }
}
#endif

}  // namespace lmlab::kernels::cpu
