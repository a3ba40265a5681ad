// sample_token's temperature pick against the definition it implements: rank the whole vocabulary (logit_ahead's
// order), keep the top_k, then those with prob >= min_p x the first's, then the shortest prefix whose probability
// over the top_k reaches top_p, and draw in proportion to e^((l - max) / T). The reference below does exactly that in
// double; the sampler ranks only what its filters can keep and draws unfiltered tokens in id order, so the check is
// the distribution: no token outside the reference's kept set, and every group of kept tokens drawn at its
// probability within five binomial standard deviations (fixed seeds: the counts are the same every run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "generate/logit_order.h"
#include "lmlab/generate.h"

namespace lmlab {
namespace {

// The kept ids in rank order and their probabilities.
struct Kept {
  std::vector<int32_t> ids;
  std::vector<double> prob;
};

Kept reference(const std::vector<float>& l, const SamplingParams& p) {
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logit_ahead(l, a, b); });
  const int64_t vocab = static_cast<int64_t>(l.size());
  int64_t keep = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
  const double max_l = l[ids[0]];
  std::vector<double> prob(static_cast<size_t>(keep));
  double sum = 0.0;
  for (int64_t i = 0; i < keep; ++i) sum += prob[i] = std::isnan(l[ids[i]]) ? 0.0 : std::exp((l[ids[i]] - max_l) / p.temperature);
  for (auto& x : prob) x /= sum;
  if (p.min_p > 0.0f)
    while (keep > 1 && prob[keep - 1] < prob[0] * p.min_p) --keep;
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    for (int64_t i = 0; i < keep; ++i)
      if ((cum += prob[i]) >= p.top_p) {
        keep = i + 1;
        break;
      }
  }
  Kept k;
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) total += prob[i];
  for (int64_t i = 0; i < keep; ++i)
    if (prob[i] > 0.0) k.ids.push_back(ids[i]), k.prob.push_back(prob[i] / total);
  return k;
}

// Draws `draws` tokens and compares them with the reference: membership, then groups of consecutive kept ranks of
// about equal probability (single tokens when the kept set is small).
void expect_distribution(const std::vector<float>& l, const SamplingParams& p, int draws, uint64_t seed) {
  const Kept ref = reference(l, p);
  std::vector<int> group_of(l.size(), -1);
  std::vector<double> group_prob;
  const int groups = std::min<int>(static_cast<int>(ref.ids.size()), 24);
  double cum = 0.0;
  for (size_t i = 0; i < ref.ids.size(); ++i) {
    const int g = std::min(groups - 1, static_cast<int>(cum * groups));
    if (g >= static_cast<int>(group_prob.size())) group_prob.resize(g + 1, 0.0);
    group_of[ref.ids[i]] = g;
    group_prob[g] += ref.prob[i];
    cum += ref.prob[i];
  }
  std::vector<int> hits(group_prob.size(), 0);
  uint64_t rng = seed;
  for (int d = 0; d < draws; ++d) {
    const int32_t id = sample_token(l, p, rng);
    ASSERT_TRUE(id >= 0 && id < static_cast<int32_t>(l.size()));
    ASSERT_GE(group_of[id], 0) << "drew token " << id << ", which the filters drop";
    ++hits[group_of[id]];
  }
  for (size_t g = 0; g < hits.size(); ++g) {
    const double q = group_prob[g], sd = std::sqrt(q * (1 - q) / draws);
    EXPECT_NEAR(static_cast<double>(hits[g]) / draws, q, 5 * sd + 1e-4) << "group " << g << " of " << hits.size();
  }
}

SamplingParams params(float t, int top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = t, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p;
  return p;
}

std::vector<float> normal_logits(int n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& x : l) x = d(rng);
  return l;
}

TEST(SamplerDistribution, EveryFilterCombinationDrawsAsTheFullRanking) {
  const std::vector<float> l = normal_logits(60, 2.0f, 3);
  for (const float t : {0.7f, 1.3f})
    for (const int top_k : {0, 5})
      for (const float top_p : {1.0f, 0.8f})
        for (const float min_p : {0.0f, 0.05f}) {
          SCOPED_TRACE(::testing::Message() << "T " << t << " top_k " << top_k << " top_p " << top_p << " min_p " << min_p);
          expect_distribution(l, params(t, top_k, top_p, min_p), 20000, 11);
          if (HasFatalFailure()) return;
        }
}

TEST(SamplerDistribution, LongPrefixesAndTiesAcrossAVocabulary) {
  // Flat logits: top_p's prefix runs past the first ranks the sampler computes (256, then 2048, then all);
  // rounded logits tie in blocks, ranked by id.
  std::vector<float> flat = normal_logits(5000, 0.3f, 5);
  expect_distribution(flat, params(1.0f, 0, 0.9f, 0.0f), 20000, 21);
  expect_distribution(flat, params(1.0f, 3000, 0.95f, 0.0f), 20000, 22);
  expect_distribution(flat, params(0.5f, 0, 1.0f, 0.5f), 20000, 23);
  std::vector<float> ties = normal_logits(2000, 2.0f, 6);
  for (auto& x : ties) x = std::round(x);
  expect_distribution(ties, params(1.0f, 100, 1.0f, 0.0f), 20000, 24);
  expect_distribution(ties, params(1.0f, 0, 0.5f, 0.0f), 20000, 25);
  expect_distribution(ties, params(1.0f, 0, 1.0f, 0.0f), 20000, 26);
}

TEST(SamplerDistribution, AnInfiniteLogitTakesThePick) {
  std::vector<float> l = normal_logits(100, 1.0f, 8);
  l[40] = std::numeric_limits<float>::infinity();
  l[70] = std::numeric_limits<float>::infinity();
  uint64_t rng = 3;
  for (int d = 0; d < 20; ++d) EXPECT_EQ(sample_token(l, params(1.0f, 0, 0.9f, 0.0f), rng), 40);
}

}  // namespace
}  // namespace lmlab
