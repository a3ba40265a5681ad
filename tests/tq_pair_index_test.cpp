// The tensor-core TurboQuant decode's code pairs (engine/src/cuda/kernels/tq_pair_index.h) against the CPU's packed
// layouts (kv/turboquant/pack.h): every pair index a lane forms names the codes of the dims the kernel multiplies
// them with; and where both TurboQuant decode kernels stage a tile's records (tq_staging.h). Host code, so CI (no
// GPU) checks the index and layout math the GPU tests exercise end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/kernels/tq_pair_index.h"
#include "cuda/kernels/tq_staging.h"
#include "kv/turboquant/pack.h"

namespace lmlab {
namespace {

namespace tq = kernels::cuda::tq;

template <int KB>
void check_key_pairs(int g, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << KB << "-bit keys, groups of " << g);
  std::uniform_int_distribution<int> code(0, (1 << KB) - 1);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> codes(g), packed(KB * g / 8);
    for (auto& c : codes) c = static_cast<uint8_t>(code(rng));
    turboquant::pack_codes(codes.data(), g, KB, packed.data());
    for (int j = 0; j < g / 32; ++j)
      for (int c = 0; c < 4; ++c) {
        uint32_t idx[4];
        tq::key_pair_indices<KB>(packed.data(), j, c, g / 8, idx);
        for (int i = 0; i < 4; ++i) {
          ASSERT_LT(idx[i], 1u << (2 * KB)) << "chunk " << j << " lane " << c << " pair " << i;
          int first = -1, second = -1;
          tq::key_pair_codes<KB>(idx[i], first, second);
          const int d = 32 * j + 8 * c + 2 * i;
          ASSERT_EQ(first, codes[d]) << "dim " << d;
          ASSERT_EQ(second, codes[d + 1]) << "dim " << d + 1;
        }
      }
  }
}

TEST(TqPairIndex, KeyPairsNameTheCodesOfAdjacentDims) {
  std::mt19937 rng(7);
  for (int g : {32, 64, 128}) {
    check_key_pairs<2>(g, rng);
    check_key_pairs<3>(g, rng);
    check_key_pairs<4>(g, rng);
    check_key_pairs<5>(g, rng);
  }
}

// The warps kernel's lane-major chunks (lane c takes plane bytes NC c .. NC c + NC - 1, transposed as words) name
// the same pairs as key_pair_indices at that byte's chunk and lane, for every packing of the codes.
template <int KB, int NC>
void check_key_lane_indices(std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << KB << "-bit keys, groups of " << 32 * NC);
  constexpr int g = 32 * NC;
  std::uniform_int_distribution<int> code(0, (1 << KB) - 1);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> codes(g), packed(KB * g / 8);
    for (auto& c : codes) c = static_cast<uint8_t>(code(rng));
    turboquant::pack_codes(codes.data(), g, KB, packed.data());
    for (int c = 0; c < 4; ++c) {
      uint32_t idx[NC][4];
      tq::key_lane_indices<KB, NC>(packed.data(), c, g / 8, idx);
      for (int j = 0; j < NC; ++j) {
        const int b = NC * c + j;
        uint32_t ref[4];
        tq::key_pair_indices<KB>(packed.data(), b / 4, b % 4, g / 8, ref);
        for (int i = 0; i < 4; ++i) {
          ASSERT_EQ(idx[j][i], ref[i]) << "lane " << c << " chunk " << j << " pair " << i;
          int first = -1, second = -1;
          tq::key_pair_codes<KB>(idx[j][i], first, second);
          ASSERT_EQ(first, codes[8 * b + 2 * i]) << "dim " << 8 * b + 2 * i;
          ASSERT_EQ(second, codes[8 * b + 2 * i + 1]) << "dim " << 8 * b + 2 * i + 1;
        }
      }
    }
  }
}

TEST(TqPairIndex, LaneMajorKeyChunksNameTheSamePairs) {
  std::mt19937 rng(5);
  check_key_lane_indices<2, 2>(rng), check_key_lane_indices<2, 4>(rng);
  check_key_lane_indices<3, 2>(rng), check_key_lane_indices<3, 4>(rng);
  check_key_lane_indices<4, 2>(rng), check_key_lane_indices<4, 4>(rng);
  check_key_lane_indices<5, 2>(rng), check_key_lane_indices<5, 4>(rng);
}

// Two positions' 4-bit records: lane r's byte of word u gives the pairs (position a, position b) of rows r and r + 8
// of m tile u, whose dims value_row_dim names; the 16 rows of a tile are its 16 dims.
TEST(TqPairIndex, ValuePairsNameTheRowsDims) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> code(0, 15);
  for (int g : {16, 32, 128}) {
    SCOPED_TRACE(::testing::Message() << "groups of " << g);
    std::vector<uint8_t> a(g), b(g), pa(g / 2), pb(g / 2);
    for (int trial = 0; trial < 50; ++trial) {
      for (int d = 0; d < g; ++d) a[d] = static_cast<uint8_t>(code(rng)), b[d] = static_cast<uint8_t>(code(rng));
      turboquant::pack_codes(a.data(), g, 4, pa.data());
      turboquant::pack_codes(b.data(), g, 4, pb.data());
      for (int u = 0; u < g / 16; ++u) {
        std::vector<int> seen(16, 0);
        for (int r = 0; r < 8; ++r) {
          const uint32_t z = pa[8 * u + r] | static_cast<uint32_t>(pb[8 * u + r]) << 8;
          for (const int row : {r, r + 8}) {
            const uint32_t idx = row < 8 ? tq::value_pair_low(z) : tq::value_pair_high(z);
            const int d = tq::value_row_dim(u, row);
            ASSERT_GE(d, 16 * u);
            ASSERT_LT(d, 16 * u + 16);
            ++seen[d - 16 * u];
            ASSERT_EQ(static_cast<int>(idx & 15u), a[d]) << "word " << u << " row " << row;
            ASSERT_EQ(static_cast<int>(idx >> 4), b[d]) << "word " << u << " row " << row;
          }
        }
        for (int k = 0; k < 16; ++k) ASSERT_EQ(seen[k], 1) << "dim " << 16 * u + k << " of word " << u;
      }
    }
  }
}

// The warps decode's value-table offsets (value_entry_offset): byte `byte` of a word as the entry's byte offset in
// tables of entries 4 to 256 bytes apart, the one shift and mask equal to extracting the byte and scaling it.
TEST(TqPairIndex, ValueEntryOffsetsScaleTheWordsBytes) {
  std::mt19937 rng(17);
  auto check = [&](auto log_c) {
    constexpr int kLog = decltype(log_c)::value;
    for (int trial = 0; trial < 20000; ++trial) {
      const uint32_t x = static_cast<uint32_t>(rng());
      for (int byte = 0; byte < 4; ++byte)
        ASSERT_EQ(tq::value_entry_offset<kLog>(x, byte), ((x >> (8 * byte)) & 255u) << kLog)
            << "entries " << (1 << kLog) << " bytes apart, byte " << byte << " of " << x;
    }
  };
  check(std::integral_constant<int, 2>{});
  check(std::integral_constant<int, 6>{});  // the warps decode's 16 copies of 4-byte entries
  check(std::integral_constant<int, 8>{});
}

// The warps-own-positions decode's value half words: over records of one to two groups of 64 or 128 dims (codes then
// a scalar per group), nibble k of the 4 bytes at warp_value_word_offset(w) is the code of warp_value_dim(w, k), every
// dim is named once, and value_pairs_even / odd pair two records' nibbles into the value table's index.
TEST(TqPairIndex, WarpValueWordsNameEveryDimOnce) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> code(0, 15);
  for (const auto& [vg, head_dim] : {std::pair{64, 64}, std::pair{64, 128}, std::pair{128, 128}}) {
    SCOPED_TRACE(::testing::Message() << "groups of " << vg << ", head_dim " << head_dim);
    const int group_bytes = vg / 2 + 2;  // 4-bit codes, an f16 scalar
    std::vector<uint8_t> a(head_dim), b(head_dim), ra(group_bytes * head_dim / vg), rb(ra.size());
    for (int trial = 0; trial < 50; ++trial) {
      for (int d = 0; d < head_dim; ++d) a[d] = static_cast<uint8_t>(code(rng)), b[d] = static_cast<uint8_t>(code(rng));
      for (int gi = 0; gi < head_dim / vg; ++gi) {
        turboquant::pack_codes(a.data() + gi * vg, vg, 4, ra.data() + gi * group_bytes);
        turboquant::pack_codes(b.data() + gi * vg, vg, 4, rb.data() + gi * group_bytes);
      }
      std::vector<int> seen(head_dim, 0);
      for (int w = 0; w < head_dim / 8; ++w) {
        const int at = tq::warp_value_word_offset(w, vg, group_bytes);
        ASSERT_LE(at + 4, static_cast<int>(ra.size()));
        uint32_t wa = 0, wb = 0;
        for (int i = 0; i < 4; ++i) wa |= uint32_t{ra[at + i]} << (8 * i), wb |= uint32_t{rb[at + i]} << (8 * i);
        const uint32_t even = tq::value_pairs_even(wa, wb), odd = tq::value_pairs_odd(wa, wb);
        for (int k = 0; k < 8; ++k) {
          const int d = tq::warp_value_dim(w, k, vg);
          ASSERT_GE(d, 0);
          ASSERT_LT(d, head_dim);
          ++seen[d];
          ASSERT_EQ(static_cast<int>((wa >> (4 * k)) & 15u), a[d]) << "half word " << w << " nibble " << k;
          const uint32_t idx = ((k & 1 ? odd : even) >> (8 * (k >> 1))) & 255u;
          ASSERT_EQ(static_cast<int>(idx & 15u), a[d]) << "half word " << w << " nibble " << k;
          ASSERT_EQ(static_cast<int>(idx >> 4), b[d]) << "half word " << w << " nibble " << k;
        }
      }
      for (int d = 0; d < head_dim; ++d) ASSERT_EQ(seen[d], 1) << "dim " << d;
    }
  }
}

// issue_tile's segments and placement: for every KV block size, record size, tile start in its block, tile length and
// source offset in a 16-byte chunk, the segments cover the tile in order, each inside one block, and each segment's
// 16-byte chunks start 16-byte aligned, do not reach the next segment's, and end inside staged_records_bytes.
TEST(TqStaging, SegmentsOfATileNeitherOverlapNorOverflowTheArea) {
  for (const int rec : {36, 68, 84, 130, 260})
    for (int B = 1; B <= 70; ++B) {
      const int area = tq::staged_records_bytes(rec, B);
      ASSERT_EQ(area % 16, 0);
      for (int slot0 = 0; slot0 < B; ++slot0)
        for (int n = 1; n <= tq::kTqTile; ++n)
          for (int head = 0; head < 16; head += 5) {
            int end = 0, covered = 0;  // the previous segment's last byte + 1; positions staged so far
            const int nseg = tq::tile_segments(slot0, n, B);
            for (int s = 0; s < nseg; ++s) {
              int t0 = 0, cnt = 0;
              tq::tile_segment(slot0, n, B, s, t0, cnt);
              ASSERT_EQ(t0, covered) << "segment " << s << " (B " << B << ", slot " << slot0 << ", n " << n << ")";
              ASSERT_GT(cnt, 0);
              ASSERT_LE(cnt, s == 0 ? B - slot0 : B) << "segment " << s << " stays in its block";
              const int at = tq::segment_at(t0, rec, s), chunks = (head + cnt * rec + 15) / 16;
              ASSERT_EQ(at % 16, 0);
              ASSERT_GE(at, end) << "segment " << s << " overlaps the one before (B " << B << ", rec " << rec << ")";
              end = at + 16 * chunks;
              covered += cnt;
            }
            ASSERT_EQ(covered, n) << "the segments cover the tile";
            ASSERT_LE(end, area) << "B " << B << ", rec " << rec << ", slot " << slot0 << ", n " << n;
            ASSERT_LT(area, 0xFFFF) << "uint16 offsets below kNoRecord";
          }
    }
}

// The decode kernels' block division: a shift for powers of two, the division otherwise.
TEST(TqStaging, BlockDivisionEqualsTheQuotient) {
  for (uint32_t B = 1; B <= 300; ++B)
    for (uint32_t x : {0u, 1u, 31u, 32u, 33u, 63u, 64u, 1000u, 40000u, 100000u, 1u << 20, 0x7FFFFFFFu, 0xFFFFFFFFu})
      ASSERT_EQ(tq::div_block(x, B), x / B) << x << " / " << B;
}

}  // namespace
}  // namespace lmlab
