// A decode step's host-side pick over a 151,936-token vocabulary (qwen3's), one thread, seeded normal logits: what a
// GPU decode step waits for between its graph launches (docs/cuda.md, twenty-eighth session).
//   BM_pick_greedy / BM_pick_greedy_loop    sample_token at temperature 0 (kernels::cpu::argmax) / the loop it replaced
//   BM_pick_sampled                         sample_token at temperature 0.8 (the whole vocabulary ranked, no top-k)
//   BM_rank_radix / BM_rank_comparison      ids_by_logit / std::sort with logit_ahead (what sample_token used)
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
BENCHMARK(BM_rank_radix)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_rank_comparison)->Unit(benchmark::kMillisecond);
