// The tensor-core TurboQuant decode's code pairs (engine/src/cuda/kernels/tq_pair_index.h) against the CPU's packed
// layouts (kv/turboquant/pack.h): every pair index a lane forms names the codes of the dims the kernel multiplies
// them with. Host code, so CI (no GPU) checks the index math the GPU tests exercise end to end.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/kernels/tq_pair_index.h"
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
        uint32_t one[8];
        tq::key_codes<KB>(packed.data(), j, c, g / 8, one);
        for (int k = 0; k < 8; ++k)
          ASSERT_EQ(static_cast<int>(one[k]), codes[32 * j + 8 * c + k])
              << "chunk " << j << " lane " << c << " code " << k;
      }
  }
}

TEST(TqPairIndex, KeyPairsAndCodesNameTheCodesOfAdjacentDims) {
  std::mt19937 rng(7);
  for (int g : {32, 64, 128}) {
    check_key_pairs<2>(g, rng);
    check_key_pairs<3>(g, rng);
    check_key_pairs<4>(g, rng);
    check_key_pairs<5>(g, rng);
  }
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
            uint32_t low[2], high[2];
            tq::value_codes(z, low, high);
            const uint32_t(&one)[2] = row < 8 ? low : high;
            ASSERT_EQ(static_cast<int>(one[0]), a[d]) << "word " << u << " row " << row;
            ASSERT_EQ(static_cast<int>(one[1]), b[d]) << "word " << u << " row " << row;
          }
        }
        for (int k = 0; k < 16; ++k) ASSERT_EQ(seen[k], 1) << "dim " << 16 * u + k << " of word " << u;
      }
    }
  }
}

// The V codebook in registers gives, for every pair of two positions' bytes, the f16x2 pair the pair table holds at
// value_pair_low / value_pair_high of the same bytes (the sign-replicating byte permute emulated on the host).
TEST(TqPairIndex, RegisterTableGivesThePairTablesEntries) {
  // The host prmt against PTX's documented cases: bytes picked from {b : a}, and a selector's bit 3 replicating the
  // picked byte's sign.
  ASSERT_EQ(tq::prmt(0x03020100u, 0x07060504u, 0x7531u), 0x07050301u);
  ASSERT_EQ(tq::prmt(0x00000080u, 0u, 0x4448u), 0x000000FFu);
  ASSERT_EQ(tq::prmt(0x0000007Fu, 0u, 0x4408u), 0x00007F00u);
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> bits(0, 0xFFFF);
  for (int trial = 0; trial < 4; ++trial) {
    uint16_t entry[16];
    for (auto& e : entry) e = static_cast<uint16_t>(bits(rng));
    entry[trial] = static_cast<uint16_t>(0x8080u | trial);  // bytes with the sign bit set in the table itself
    const tq::RegisterTable16 t = tq::register_table16(entry);
    auto pair = [&](uint32_t idx) { return static_cast<uint32_t>(entry[idx & 15u]) | entry[idx >> 4] << 16; };
    for (uint32_t z = 0; z < 0x10000u; ++z) {
      uint32_t row_r = 0, row_r8 = 0;
      tq::value_pairs_in_registers(z | 0xABCD0000u, t, row_r, row_r8);  // the upper half is not read
      ASSERT_EQ(row_r, pair(tq::value_pair_low(z))) << "z " << z;
      ASSERT_EQ(row_r8, pair(tq::value_pair_high(z))) << "z " << z;
    }
  }
}

}  // namespace
}  // namespace lmlab
