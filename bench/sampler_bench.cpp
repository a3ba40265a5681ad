// A decode step's host-side pick over a 151,936-token vocabulary (qwen3's), one thread, seeded normal logits: what a
// GPU decode step waits for between its graph launches (docs/cuda.md, twenty-eighth session).
//   BM_pick_greedy / BM_pick_greedy_loop    sample_token at temperature 0 (kernels::cpu::argmax) / the loop it replaced
//   BM_pick_sampled                         sample_token at temperature 0.8, no filter (drawn in id order, unranked)
//   BM_pick_sampled_top_p / _top_k / _min_p  the same with top_p 0.95 / top_k 40 / min_p 0.05 (the ranking's first ids)
//   BM_rank_radix / BM_rank_comparison      ids_by_logit / std::sort with logit_ahead (what sample_token used)
//   BM_rank_first40                         first_ids_by_logit(40): a top-k filter's or logprobs' ranks
//   BM_logprobs_top5                        token_logprobs with 5 alternatives (a streamed token with logprobs)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "generate/logit_order.h"
#include "lmlab/generate.h"

namespace {

constexpr int64_t kVocab = 151936;

std::vector<float> vocabulary_logits() {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> l(kVocab);
  for (auto& x : l) x = d(rng);
  return l;
}

void BM_pick_greedy(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  lmlab::SamplingParams p;
  uint64_t rng = 1;
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::sample_token(l, p, rng));
}

void BM_pick_greedy_loop(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  for (auto _ : state) {
    int64_t best = 0;
    while (best < kVocab && std::isnan(l[best])) ++best;
    for (int64_t i = best + 1; i < kVocab; ++i)
      if (l[i] > l[best]) best = i;
    benchmark::DoNotOptimize(best);
  }
}

void BM_pick_sampled(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  lmlab::SamplingParams p;
  p.temperature = 0.8f;
  uint64_t rng = 1;
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::sample_token(l, p, rng));
}

void pick_sampled_with(benchmark::State& state, float top_p, int top_k, float min_p) {
  const std::vector<float> l = vocabulary_logits();
  lmlab::SamplingParams p;
  p.temperature = 0.8f, p.top_p = top_p, p.top_k = top_k, p.min_p = min_p;
  uint64_t rng = 1;
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::sample_token(l, p, rng));
}
void BM_pick_sampled_top_p(benchmark::State& state) { pick_sampled_with(state, 0.95f, 0, 0.0f); }
void BM_pick_sampled_top_k(benchmark::State& state) { pick_sampled_with(state, 1.0f, 40, 0.0f); }
void BM_pick_sampled_min_p(benchmark::State& state) { pick_sampled_with(state, 1.0f, 0, 0.05f); }

void BM_rank_first40(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::first_ids_by_logit(l, 40));
}

void BM_logprobs_top5(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::token_logprobs(l, 7, 5));
}

void BM_rank_radix(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::ids_by_logit(l));
}

void BM_rank_comparison(benchmark::State& state) {
  const std::vector<float> l = vocabulary_logits();
  for (auto _ : state) {
    std::vector<int32_t> ids(kVocab);
    std::iota(ids.begin(), ids.end(), 0);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return lmlab::logit_ahead(l, a, b); });
    benchmark::DoNotOptimize(ids);
  }
}

}  // namespace

BENCHMARK(BM_pick_greedy)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pick_greedy_loop)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pick_sampled)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pick_sampled_top_p)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pick_sampled_top_k)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pick_sampled_min_p)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_rank_first40)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_logprobs_top5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_rank_radix)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_rank_comparison)->Unit(benchmark::kMillisecond);
