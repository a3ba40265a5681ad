// What the two split-int8 kernels share (the row-layout one, matmul_affine_i8.cpp, and the panel one,
// matmul_affine_i8_panels.cpp): the activations packed once per call in the kernels' order, the broadcast dot,
// and the threading grain. Shared so that both compute with the same bytes and instructions (bit-identical).
#pragma once

#include <algorithm>
#include <cstdint>
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
#endif

}  // namespace lmlab::kernels::cpu
