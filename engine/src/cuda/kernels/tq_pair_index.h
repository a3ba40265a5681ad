// Which packed codes the tensor-core TurboQuant decode (tq_decode_mma.cu) reads as one pair-table index, and which
// dims they are: host and device code, so tests/tq_pair_index_test.cpp checks it on the CPU against
// kv/turboquant/pack.h's layouts (CI has no GPU).
//   - Key pairs: lane c of a warp takes, per 32 dims (chunk j) of a group record gr, the 8 codes of dims
//     32 j + 8 c .. + 7 as 4 pairs (dims 32 j + 8 c + 2 i and + 1). Planes (2, 3, 5 bits; plane p's byte b holds bit
//     p of codes 8 b .. 8 b + 7): index bits 2 p and 2 p + 1 are the first and the second code's bit p. Nibbles (4
//     bits; entry e of a 16-code word at bit 32 (e % 2) + 4 (e / 2)): a pair is an even entry (the word's low half)
//     and the next odd one (its high half), index = first | second << 4.
//   - Value pairs (4-bit): lane r reads byte r of a 16-code word of two positions, z = byte of the first | byte of
//     the second << 8; its low nibbles are the pair of row r (the entry 4 (r % 4) + r / 4 of the word), its high
//     nibbles that of row r + 8 (the entry two further), index = first | second << 4.
#pragma once

#include <cstdint>

#include "cuda/kernels/tq_host_device.h"

namespace lmlab::kernels::cuda::tq {

// The bytes of {b : a} picked by the selector's nibbles (__byte_perm without its sign modes).
LMLAB_TQ_HD uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(a, b, sel);
#else
  const uint64_t ab = static_cast<uint64_t>(b) << 32 | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>((ab >> (8 * ((sel >> (4 * i)) & 7u))) & 255u) << (8 * i);
  return r;
#endif
}

// A little-endian uint16 at a 2-byte aligned address.
LMLAB_TQ_HD uint32_t load_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  return static_cast<uint32_t>(p[0] | p[1] << 8);
#endif
}

// Byte b of planes 0-3 of a planar group record as one word with pair i's bits of planes 0-3 in byte i (bit 2 p:
// the first code's bit p, 2 p + 1: the second's): in the loaded word the 2-bit field (plane p, pair i) sits at bit
// 8 p + 2 i, and a 4 x 4 transpose of the fields (two delta swaps) moves it to 8 i + 2 p.
template <int KB>
LMLAB_TQ_HD uint32_t plane_pairs(const uint8_t* gr, int b, int plane_bytes) {
  uint32_t w = static_cast<uint32_t>(gr[b]) | static_cast<uint32_t>(gr[plane_bytes + b]) << 8;
  if constexpr (KB > 2) w |= static_cast<uint32_t>(gr[2 * plane_bytes + b]) << 16;
  if constexpr (KB > 3) w |= static_cast<uint32_t>(gr[3 * plane_bytes + b]) << 24;
  uint32_t x = ((w >> 12) ^ w) & 0x0000F0F0u;
  w ^= x ^ (x << 12);
  x = ((w >> 6) ^ w) & 0x00CC00CCu;
  w ^= x ^ (x << 6);
  return w;
}

// The table indices of lane c's 4 key pairs in chunk j of group record gr (plane_bytes = g / 8).
template <int KB>
LMLAB_TQ_HD void key_pair_indices(const uint8_t* gr, int j, int c, int plane_bytes, uint32_t (&idx)[4]) {
  if constexpr (KB == 4) {
    const uint8_t* w = gr + 8 * (2 * j + (c >> 1)) + 2 * (c & 1);  // the low halves' nibbles; the high halves at + 4
    const uint32_t z = load_u16(w) | load_u16(w + 4) << 16;
    for (int i = 0; i < 4; ++i) idx[i] = ((z >> (4 * i)) & 15u) | ((z >> (12 + 4 * i)) & 0xF0u);
  } else {
    const int b = 4 * j + c;
    const uint32_t w = plane_pairs<KB>(gr, b, plane_bytes);
    // Plane 4's pair i goes to byte i of s, and byte permutes pair the bytes into 16-bit indices.
    uint32_t s = 0;
    if constexpr (KB == 5) {
      const uint32_t top = gr[4 * plane_bytes + b];
      s = (top & 3u) | (top & 0xCu) << 6 | (top & 0x30u) << 12 | (top & 0xC0u) << 18;
    }
    const uint32_t i01 = byte_perm(w, s, 0x5140), i23 = byte_perm(w, s, 0x7362);
    idx[0] = i01 & 0xFFFFu, idx[1] = i01 >> 16, idx[2] = i23 & 0xFFFFu, idx[3] = i23 >> 16;
  }
}

// The warps kernel (tq_decode_warps.cu) gives lane c the bytes NC c .. NC c + NC - 1 of each plane of a group record
// of 32 NC dims (NC = 2 or 4 chunks): its chunk j is plane byte b = NC c + j (dims 8 b .. 8 b + 7; key_pair_indices'
// chunk b / 4, lane b % 4). A plane's NC bytes come as one word, and the 2-bit fields of planes 0-3 are transposed
// for all chunks at once (two rounds of delta swaps between the words) instead of per byte (5 byte loads and ~27
// operations a lane, chunk and position): the scores' instructions per warp and tile went from ~488 to ~354
// (eighteenth session's SASS).
template <int NC>
LMLAB_TQ_HD uint32_t lane_plane_bytes(const uint8_t* p) {
  static_assert(NC == 2 || NC == 4, "groups of 64 or 128 dims");
  if constexpr (NC == 2) return load_u16(p);
  else return load_u16(p) | load_u16(p + 2) << 16;
}
// Swaps field b's bits of a with field a's next ones (the masked fields of (a >> s) and b).
LMLAB_TQ_HD void delta_swap(uint32_t& a, uint32_t& b, int s, uint32_t mask) {
  const uint32_t t = ((a >> s) ^ b) & mask;
  b ^= t;
  a ^= t << s;
}
// The table indices of lane c's 4 pairs in each of its NC chunks: idx[j][i] = key_pair_indices' index of chunk
// (NC c + j) / 4, lane (NC c + j) % 4, pair i.
template <int KB, int NC>
LMLAB_TQ_HD void key_lane_indices(const uint8_t* gr, int c, int plane_bytes, uint32_t (&idx)[NC][4]) {
  if constexpr (KB == 4) {
    for (int j = 0; j < NC; ++j) key_pair_indices<4>(gr, (NC * c + j) >> 2, (NC * c + j) & 3, plane_bytes, idx[j]);
  } else {
    uint32_t w[4] = {0, 0, 0, 0};
    for (int p = 0; p < KB && p < 4; ++p) w[p] = lane_plane_bytes<NC>(gr + p * plane_bytes + NC * c);
    // Byte j of plane p holds pair i's bits p at bits 2 i, 2 i + 1. After the 2-bit swaps the low nibbles of words
    // 0 / 2 hold planes (0, 1) / (2, 3) of pair 0, words 1 / 3 those of pair 1, the high nibbles pairs 2 and 3;
    // after the 4-bit swaps byte j of word i is pair i's index bits 0-7 (plane p at bit 2 p).
    delta_swap(w[0], w[1], 2, 0x33333333u);
    delta_swap(w[2], w[3], 2, 0x33333333u);
    delta_swap(w[0], w[2], 4, 0x0F0F0F0Fu);
    delta_swap(w[1], w[3], 4, 0x0F0F0F0Fu);
    const uint32_t top = KB == 5 ? lane_plane_bytes<NC>(gr + 4 * plane_bytes + NC * c) : 0u;
    for (int i = 0; i < 4; ++i) {
      const uint32_t s = (top >> (2 * i)) & 0x03030303u;  // pair i's plane-4 bits (index bits 8, 9) of each chunk
      const uint32_t i01 = byte_perm(w[i], s, 0x5140);    // chunks 0 and 1 as 16-bit indices
#if defined(__CUDA_ARCH__)
      // Bits 10-15 of each half are zero (s keeps 2 bits a byte): the compiler may then take (i01 >> 16) x 4 as
      // i01 >> 14 and (i01 & 0xFFFF) x 4 without its mask.
      __builtin_assume((i01 & 0xFC00FC00u) == 0);
#endif
      idx[0][i] = i01 & 0xFFFFu, idx[1][i] = i01 >> 16;
      if constexpr (NC == 4) {
        const uint32_t i23 = byte_perm(w[i], s, 0x7362);
#if defined(__CUDA_ARCH__)
        __builtin_assume((i23 & 0xFC00FC00u) == 0);
#endif
        idx[2][i] = i23 & 0xFFFFu, idx[3][i] = i23 >> 16;
      }
    }
  }
}

// The codes of key-table index i (for filling the table).
template <int KB>
LMLAB_TQ_HD void key_pair_codes(uint32_t i, int& first, int& second) {
  if constexpr (KB == 4) {
    first = static_cast<int>(i & 15u), second = static_cast<int>(i >> 4);
  } else {
    first = second = 0;
    for (int p = 0; p < KB; ++p)
      first |= static_cast<int>((i >> (2 * p)) & 1u) << p, second |= static_cast<int>((i >> (2 * p + 1)) & 1u) << p;
  }
}

// The value-table indices of rows r (low nibbles) and r + 8 (high nibbles) from z.
LMLAB_TQ_HD uint32_t value_pair_low(uint32_t z) { return (z & 15u) | ((z >> 4) & 0xF0u); }
LMLAB_TQ_HD uint32_t value_pair_high(uint32_t z) { return ((z >> 4) & 15u) | ((z >> 8) & 0xF0u); }
// The dim (of the head) of row `row` (0-15) of the 16-dim m tile mt.
LMLAB_TQ_HD int value_row_dim(int mt, int row) {
  const int r = row & 7;
  return 16 * mt + 4 * (r & 3) + (r >> 2) + (row >= 8 ? 2 : 0);
}

// The warps-own-positions decode (tq_decode_warps.cu) reads 4-bit value records by 8-code half words: half word w of
// a head vector (codes 8 w .. 8 w + 7 in record order, value groups of vg >= 64 dims) is the low (even entries) or
// high (odd entries) 4 bytes of a 16-code word; lane r of a warp reads half words r + 8 i, and its nibble k is the
// dim of the output's n tile 8 i + k.
// The half word's byte offset in a record of groups of group_bytes (the codes first in each group).
LMLAB_TQ_HD int warp_value_word_offset(int w, int vg, int group_bytes) {
  return 8 * w / vg * group_bytes + 4 * (w % (vg / 8));
}
// The dim (of the head) of nibble k of half word w.
LMLAB_TQ_HD int warp_value_dim(int w, int k, int vg) {
  const int lw = w % (vg / 8);
  return 8 * w / vg * vg + 16 * (lw >> 1) + 2 * k + (lw & 1);
}
// The byte offset of value-table entry ((x >> 8 byte) & 255) in a table of entries 2^kLog bytes apart: the byte
// shifted straight into place and masked.
template <int kLog>
LMLAB_TQ_HD uint32_t value_entry_offset(uint32_t x, int byte) {
  static_assert(kLog >= 0 && kLog <= 8, "a shift within the byte's reach");
  const int s = 8 * byte - kLog;
  return (s >= 0 ? x >> s : x << -s) & (255u << kLog);
}
// Value-table indices (first | second << 4) of two positions' half words a (first) and b: byte m of the even one
// pairs their nibbles 2 m, byte m of the odd one their nibbles 2 m + 1.
LMLAB_TQ_HD uint32_t value_pairs_even(uint32_t a, uint32_t b) { return (a & 0x0F0F0F0Fu) | ((b << 4) & 0xF0F0F0F0u); }
LMLAB_TQ_HD uint32_t value_pairs_odd(uint32_t a, uint32_t b) { return ((a >> 4) & 0x0F0F0F0Fu) | (b & 0xF0F0F0F0u); }

}  // namespace lmlab::kernels::cuda::tq
