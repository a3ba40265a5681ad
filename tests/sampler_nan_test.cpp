// A model can emit NaN logits (a broken checkpoint, an overflow): sampling and logprobs still return ids inside the
// vocabulary, never draw a NaN token while a number remains, and rank NaN after every number. Before, a NaN in the
// sort's comparator was undefined behaviour (libstdc++'s unguarded insertion can run off the array).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "lmlab/generate.h"

namespace lmlab {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// A vocabulary of `n` random logits with every `stride`-th one NaN (stride 1: all NaN).
std::vector<float> logits_with_nans(int n, int stride, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) l[i] = i % stride == 0 ? kNan : normal(rng);
  return l;
}

SamplingParams at_temperature(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  return p;
}

TEST(SamplerNan, GreedySkipsNanAndAllNanGivesTheFirstId) {
  std::vector<float> l = {kNan, 1.0f, kNan, 3.0f, 2.0f};
  uint64_t rng = 1;
  const SamplingParams greedy = at_temperature(0.0f);
  EXPECT_EQ(sample_token(l, greedy, rng), 3);
  l = {kNan, kNan, kNan};
  EXPECT_EQ(sample_token(l, greedy, rng), 0);
}

TEST(SamplerNan, SampledIdsAreNumbersInsideTheVocabulary) {
  const int vocab = 5000;  // above std::sort's insertion threshold many times over
  for (int stride : {2, 3, 17})
    for (int top_k : {0, 40})
      for (float top_p : {1.0f, 0.9f}) {
        SCOPED_TRACE(::testing::Message() << "stride " << stride << " top_k " << top_k << " top_p " << top_p);
        const std::vector<float> l = logits_with_nans(vocab, stride, static_cast<uint32_t>(stride * 100 + top_k));
        SamplingParams p = at_temperature(1.5f);
        p.top_k = top_k, p.top_p = top_p, p.min_p = 0.01f;
        uint64_t rng = 42;
        for (int draw = 0; draw < 200; ++draw) {
          const int32_t id = sample_token(l, p, rng);
          ASSERT_GE(id, 0);
          ASSERT_LT(id, vocab);
          ASSERT_FALSE(std::isnan(l[id])) << "drew NaN token " << id;
        }
      }
  const std::vector<float> all_nan(static_cast<size_t>(vocab), kNan);
  uint64_t rng = 7;
  EXPECT_EQ(sample_token(all_nan, at_temperature(1.0f), rng), 0);
}

TEST(SamplerNan, LogprobsRankNanAfterEveryNumber) {
  const std::vector<float> l = logits_with_nans(3000, 2, 5);  // even ids NaN
  const TokenLogprobs lp = token_logprobs(l, 1, 20);
  ASSERT_EQ(lp.top.size(), 20u);
  // The NaN logits weigh nothing in the normaliser: a number's logprob is a number (they made it NaN before).
  EXPECT_TRUE(std::isfinite(lp.logprob));
  EXPECT_LT(lp.logprob, 0.0f);
  EXPECT_TRUE(std::isfinite(lp.top[0].logprob));
  for (size_t i = 0; i < lp.top.size(); ++i) {
    EXPECT_EQ(lp.top[i].id % 2, 1) << "rank " << i;
    if (i > 0) {
      EXPECT_GE(l[lp.top[i - 1].id], l[lp.top[i].id]);
    }
  }
  const std::vector<float> mostly_nan = {kNan, 0.5f, kNan, kNan};
  const TokenLogprobs few = token_logprobs(mostly_nan, 1, 4);
  ASSERT_EQ(few.top.size(), 4u);
  EXPECT_EQ(few.top[0].id, 1);
  EXPECT_EQ(few.top[1].id, 0);  // the NaN ids after it, by id
  EXPECT_EQ(few.top[2].id, 2);
  EXPECT_EQ(few.top[3].id, 3);
}

}  // namespace
}  // namespace lmlab
