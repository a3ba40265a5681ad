// generate/logit_order.h's ids_by_logit (the sampler's ranking of the whole vocabulary by a radix sort) against
// std::sort with logit_ahead, the comparison it replaces: the same order for NaNs of any payload and sign, -0 and +0,
// infinities, subnormals, ties, and a vocabulary's size, so a seeded draw picks the same token as before.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "generate/logit_order.h"

namespace lmlab {
namespace {

std::vector<int32_t> sorted_by_comparison(const std::vector<float>& l) {
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logit_ahead(l, a, b); });
  return ids;
}

TEST(LogitOrder, RadixRankingEqualsTheComparisonSort) {
  const float inf = std::numeric_limits<float>::infinity(), denorm = std::numeric_limits<float>::denorm_min();
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            std::bit_cast<float>(0x7fa00001u), std::bit_cast<float>(0xffc12345u),  // NaN payloads
                            0.0f, -0.0f, inf, -inf, denorm, -denorm, std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::lowest(), 1.0f, -1.0f};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_int_distribution<int> pick(0, 13);
  for (const int n : {0, 1, 2, 5, 64, 1000, 151936}) {
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<float> l(static_cast<size_t>(n));
      for (auto& x : l) x = normal(rng);
      if (variant >= 1)  // specials sprinkled
        for (int i = 0; i < n; i += 7) l[i] = specials[pick(rng)];
      if (variant == 2)  // many ties: a handful of values
        for (auto& x : l) x = std::round(x);
      EXPECT_EQ(ids_by_logit(l), sorted_by_comparison(l)) << "n " << n << " variant " << variant;
    }
  }
  const std::vector<float> all_specials(std::begin(specials), std::end(specials));
  EXPECT_EQ(ids_by_logit(all_specials), sorted_by_comparison(all_specials));
}

}  // namespace
}  // namespace lmlab
