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
  EXPECT_FLOAT_EQ(few.top[0].logprob, 0.0f);  // all the mass
  EXPECT_EQ(few.top[1].logprob, -9999.0f);   // none: a number, not NaN
}

// Every reported logprob is a number whatever the logits (JSON has no NaN or -inf: a client would read null): a
// token without probability reports OpenAI's -9999, +inf logits share the mass, and logits with no number and no
// +inf make every token equally likely.
TEST(SamplerNan, LogprobsAreNumbersWhateverTheLogits) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const TokenLogprobs nan_token = token_logprobs(std::vector<float>{kNan, 0.5f, -kInf, 0.5f}, 0, 4);
  EXPECT_EQ(nan_token.logprob, -9999.0f);
  ASSERT_EQ(nan_token.top.size(), 4u);
  EXPECT_NEAR(nan_token.top[0].logprob, std::log(0.5f), 1e-6f);  // the two 0.5 logits: half the mass each
  EXPECT_NEAR(nan_token.top[1].logprob, std::log(0.5f), 1e-6f);
  EXPECT_EQ(nan_token.top[2].logprob, -9999.0f);  // -inf
  EXPECT_EQ(nan_token.top[3].logprob, -9999.0f);  // NaN
  const TokenLogprobs inf = token_logprobs(std::vector<float>{1.0f, kInf, kNan, kInf, 3.0f}, 1, 5);
  EXPECT_NEAR(inf.logprob, std::log(0.5f), 1e-6f);
  ASSERT_EQ(inf.top.size(), 5u);
  EXPECT_EQ(inf.top[0].id, 1);
  EXPECT_EQ(inf.top[1].id, 3);
  EXPECT_NEAR(inf.top[1].logprob, std::log(0.5f), 1e-6f);
  for (size_t i = 2; i < 5; ++i) EXPECT_EQ(inf.top[i].logprob, -9999.0f) << "rank " << i;
  for (const std::vector<float>& none : {std::vector<float>(8, kNan), std::vector<float>(8, -kInf),
                                         std::vector<float>{kNan, -kInf, kNan, -kInf, -kInf, kNan, kNan, -kInf}}) {
    const TokenLogprobs u = token_logprobs(none, 5, 3);
    EXPECT_NEAR(u.logprob, -std::log(8.0f), 1e-6f);
    ASSERT_EQ(u.top.size(), 3u);
    for (const TopLogprob& t : u.top) EXPECT_NEAR(t.logprob, -std::log(8.0f), 1e-6f);
  }
  // A large vocabulary of random logits with NaNs: every logprob finite and at most 0.
  const std::vector<float> l = logits_with_nans(5000, 3, 9);
  const TokenLogprobs many = token_logprobs(l, 0, 50);
  EXPECT_EQ(many.logprob, -9999.0f);
  for (const TopLogprob& t : many.top) {
    EXPECT_TRUE(std::isfinite(t.logprob));
    EXPECT_LE(t.logprob, 0.0f);
  }
}

}  // namespace
}  // namespace lmlab
