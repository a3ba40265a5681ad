// How a launch's blocks share the memory they ask L2 to fetch (engine/src/cuda/kernels/l2_prefetch.h, host and device
// code), on the CPU (CI has no GPU): every 16-byte unit of the ranges' aligned interiors goes to exactly one block,
// each prefetch is aligned, a multiple of 16 bytes and at most kL2ChunkBytes, and the shares are even.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/kernels/l2_prefetch.h"

namespace lmlab {
namespace {

using kernels::cuda::for_l2_share;
using kernels::cuda::kL2ChunkBytes;
using kernels::cuda::kMaxL2Ranges;
using kernels::cuda::L2Prefetch;

const void* at(uint64_t a) { return reinterpret_cast<const void*>(static_cast<uintptr_t>(a)); }

TEST(L2Prefetch, RangesKeepTheirAlignedInteriors) {
  L2Prefetch p;
  ASSERT_TRUE(p.add(at(0x10003), 0x105));  // [0x10003, 0x10108): units from 0x10010 up to 0x10100
  ASSERT_TRUE(p.add(at(0x20001), 14));     // no whole unit inside: dropped
  ASSERT_TRUE(p.add(at(0x30000), 0));
  ASSERT_TRUE(p.add(at(0x40000), 64));
  ASSERT_EQ(p.n, 2);
  EXPECT_EQ(p.begin[0], 0x10010u);
  EXPECT_EQ(p.units[0], (0x10100u - 0x10010u) / 16);
  EXPECT_EQ(p.begin[1], 0x40000u);
  EXPECT_EQ(p.units[1], 4u);
  EXPECT_EQ(p.total_units(), p.units[0] + 4);
  L2Prefetch full;
  for (int i = 0; i < kMaxL2Ranges; ++i) ASSERT_TRUE(full.add(at(0x1000 * (i + 1)), 32));
  EXPECT_FALSE(full.add(at(0x100000), 32)) << "a full list refuses";
  EXPECT_EQ(full.n, kMaxL2Ranges);
}

TEST(L2Prefetch, BlocksShareEveryUnitOnceInAlignedBoundedChunks) {
  // An output projection's codes, scales and biases, then gate and up rows (the 8B 4-bit shape's sizes, odd starts),
  // and a range of one unit.
  L2Prefetch p;
  const uint64_t sizes[] = {8u << 20, 512u << 10, 512u << 10, 3u << 20, 96u << 10, 96u << 10, 3u << 20, 16};
  uint64_t base = 0x7f0000000000u;
  for (const uint64_t s : sizes) {
    ASSERT_TRUE(p.add(at(base + 5), s + 11));
    base += s + (1u << 20);
  }
  ASSERT_EQ(p.n, 8);
  for (const int64_t blocks : {int64_t{1}, int64_t{7}, int64_t{528}, int64_t{4096}, static_cast<int64_t>(p.total_units()) + 3}) {
    SCOPED_TRACE(::testing::Message() << blocks << " blocks");
    std::vector<std::vector<uint8_t>> seen(p.n);  // per range and unit: times issued
    for (int i = 0; i < p.n; ++i) seen[i].assign(p.units[i], 0);
    uint64_t fewest = UINT64_MAX, most = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      uint64_t mine = 0;
      for_l2_share(p, b, blocks, [&](uint64_t a, uint32_t bytes) {
        EXPECT_EQ(a % 16, 0u);
        EXPECT_EQ(bytes % 16, 0u);
        EXPECT_GT(bytes, 0u);
        EXPECT_LE(bytes, kL2ChunkBytes);
        int in = -1;
        for (int i = 0; i < p.n; ++i)
          if (a >= p.begin[i] && a + bytes <= p.begin[i] + 16 * p.units[i]) in = i;
        ASSERT_GE(in, 0) << "a prefetch outside every range at " << a;
        for (uint64_t u = (a - p.begin[in]) / 16; u < (a + bytes - p.begin[in]) / 16; ++u) ++seen[in][u];
        mine += bytes / 16;
      });
      fewest = std::min(fewest, mine), most = std::max(most, mine);
    }
    for (int i = 0; i < p.n; ++i)
      EXPECT_TRUE(std::all_of(seen[i].begin(), seen[i].end(), [](uint8_t t) { return t == 1; }))
          << "range " << i << ": every unit issued once";
    EXPECT_LE(most - fewest, 1u) << "even shares";
  }
}

}  // namespace
}  // namespace lmlab
