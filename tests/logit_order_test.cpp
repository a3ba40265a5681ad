// generate/logit_order.h's ids_by_logit (the sampler's ranking of the whole vocabulary by a radix sort) against
// std::sort with logit_ahead, the comparison it replaces: the same order for NaNs of any payload and sign, -0 and +0,
// infinities, subnormals, ties, and a vocabulary's size; and first_ids_by_logit, that order's first n ids without
// ranking the rest (the sampler's filters, logprobs' alternatives), against its prefix.
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

TEST(LogitOrder, FirstIdsAreTheRankingsPrefix) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 1.0f};
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_int_distribution<int> pick(0, 5);
  for (const int v : {1, 7, 300, 20000, 151936}) {  // below and above the histogram's vocabulary
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<float> l(static_cast<size_t>(v));
      for (auto& x : l) x = normal(rng);
      if (variant >= 1)
        for (int i = 0; i < v; i += 5) l[i] = specials[pick(rng)];
      if (variant == 2)  // ties in blocks: one histogram bucket holds thousands
        for (auto& x : l) x = std::round(x);
      const std::vector<int32_t> all = sorted_by_comparison(l);
      for (const size_t n : {size_t{0}, size_t{1}, size_t{40}, size_t(v / 4), size_t(v / 4 + 1), size_t(v), size_t(v + 3)}) {
        const std::vector<int32_t> first = first_ids_by_logit(l, n);
        ASSERT_EQ(first.size(), std::min<size_t>(n, v));
        EXPECT_TRUE(std::equal(first.begin(), first.end(), all.begin())) << "v " << v << " variant " << variant << " n " << n;
      }
    }
  }
  // first_ids_holding: a prefix of the ranking at least as long as the weights need to reach the mass, capped.
  for (const int v : {300, 20000, 151936}) {
    std::vector<float> l(static_cast<size_t>(v)), w(static_cast<size_t>(v));
    for (auto& x : l) x = normal(rng);
    for (int i = 0; i < v; i += 9) l[i] = std::numeric_limits<float>::quiet_NaN();
    const float m = *std::max_element(l.begin(), l.end(), [](float a, float b) { return std::isnan(b) ? false : std::isnan(a) || a < b; });
    double total = 0.0;
    for (int i = 0; i < v; ++i) total += w[i] = std::isnan(l[i]) ? 0.0f : std::exp(l[i] - m);
    const std::vector<int32_t> all = sorted_by_comparison(l);
    for (const double share : {0.0, 0.3, 0.9, 0.999, 1.5}) {
      for (const size_t at_most : {size_t{5}, size_t(v)}) {
        const std::vector<int32_t> ids = first_ids_holding(l, w, share * total, at_most);
        ASSERT_FALSE(ids.empty());
        ASSERT_LE(ids.size(), at_most);
        EXPECT_TRUE(std::equal(ids.begin(), ids.end(), all.begin())) << "v " << v << " share " << share;
        double held = 0.0;
        for (const int32_t id : ids) held += w[id];
        if (ids.size() < at_most && ids.size() < static_cast<size_t>(v))
          EXPECT_GE(held, share * total * (1 - 1e-9)) << "v " << v << " share " << share << ": stopped short";
      }
    }
  }
  // Fewer numbers than ids asked for: the NaNs follow them, by id.
  std::vector<float> mostly_nan(1000, std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < 10; ++i) mostly_nan[97 * i + 3] = static_cast<float>(i % 4);
  const std::vector<int32_t> all = sorted_by_comparison(mostly_nan);
  const std::vector<int32_t> first = first_ids_by_logit(mostly_nan, 40);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), all.begin()));
}

}  // namespace
}  // namespace lmlab
