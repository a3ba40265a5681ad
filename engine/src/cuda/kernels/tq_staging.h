// Where a TurboQuant attention tile's K or V records land in shared memory (tq_records.cuh's issue_tile): host and
// device code, so tests/tq_pair_index_test.cpp checks the layout on the CPU (CI has no GPU).
// A tile of kTqTile positions is cut into segments, its positions in one KV block; each segment starts at a 16-byte
// boundary with its source's offset in a 16-byte chunk, at segment_at(t0, rec, s) for segment s starting at tile
// position t0, so a warp places its segment without the sizes of the ones before it. kSegmentSlack covers the
// start's round-up (< 16), the source's offset (< 16) and the end's round-up (< 16).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cuda/kernels/tq_host_device.h"

namespace lmlab::kernels::cuda::tq {

inline constexpr int kTqTile = 64;  // positions per attention tile
inline constexpr int kSegmentSlack = 48;

// x / B for KV blocks of B positions: a shift for the usual powers of two (the generic 32-bit division is ~30
// instructions, twice a tile in the decode kernels).
LMLAB_TQ_HD uint32_t div_block(uint32_t x, uint32_t B) {
  if ((B & (B - 1)) != 0) return x / B;
#if defined(__CUDA_ARCH__)
  return x >> (__ffs(static_cast<int>(B)) - 1);
#else
  return x >> __builtin_ctz(B);
#endif
}

LMLAB_TQ_HD constexpr int segment_at(int t0, int rec, int s) {
  return (t0 * rec + 15) / 16 * 16 + kSegmentSlack * s;
}

// The segments of a tile of n positions starting at slot slot0 of its first KV block (blocks of B positions).
LMLAB_TQ_HD int tile_segments(uint32_t slot0, int n, uint32_t B) {
  return n > 0 ? static_cast<int>(div_block(slot0 + static_cast<uint32_t>(n) + B - 1, B)) : 0;
}
// Segment s of that tile: its first tile position t0 and its count (it starts at slot 0 of block s, or at slot0 for
// s = 0).
LMLAB_TQ_HD void tile_segment(uint32_t slot0, int n, uint32_t B, int s, int& t0, int& cnt) {
  const uint32_t start = static_cast<uint32_t>(s) * B;  // counted from the first block's slot 0
  t0 = s == 0 ? 0 : static_cast<int>(start - slot0);
  const uint32_t end = start + B - slot0;
  cnt = (end < static_cast<uint32_t>(n) ? static_cast<int>(end) : n) - t0;
}

// The bytes of a tile's staged records of rec bytes (KV blocks of block_tokens positions), a multiple of 16.
inline int staged_records_bytes(int rec, int64_t block_tokens) {
  const int nseg = static_cast<int>(std::min<int64_t>(kTqTile, (kTqTile - 1) / block_tokens + 2));  // blocks touched
  return (kTqTile * rec + kSegmentSlack * nseg + 15) / 16 * 16;
}

}  // namespace lmlab::kernels::cuda::tq
