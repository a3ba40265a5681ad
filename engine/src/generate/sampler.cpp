// Token sampling: greedy, or temperature with top-k / top-p / min-p filtering, from a seeded xorshift RNG
// so runs are reproducible.
#include <cmath>
#include <vector>

#include "generate/logit_order.h"
#include "kernels/kernels.h"
#include "lmlab/generate.h"

namespace lmlab {

namespace {
uint64_t next_random(uint64_t& s) {  // splitmix64
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, uint64_t& rng) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  // Greedy: the first largest logit, NaNs never winning (every logit NaN: 0), in two vector passes: a GPU decode
  // step waits for it (kernels/cpu/argmax.cpp).
  if (p.temperature <= 0.0f) return static_cast<int32_t>(kernels::cpu::argmax(logits.data(), vocab));
  // The whole vocabulary in logit_ahead's order (a total order: the first top_k are what a partial sort gives).
  const std::vector<int32_t> ids = ids_by_logit(logits);
  int32_t keep = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
  const double max_l = logits[ids[0]];
  if (std::isnan(max_l)) return ids[0];  // every logit NaN: nothing to weigh
  std::vector<double> prob(static_cast<size_t>(keep));
  double sum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {  // a NaN logit (ranked last) is never drawn
    const double l = logits[ids[i]];
    sum += prob[i] = std::isnan(l) ? 0.0 : std::exp((l - max_l) / p.temperature);
  }
  for (auto& x : prob) x /= sum;
  if (p.min_p > 0.0f) {
    const double floor = prob[0] * p.min_p;
    while (keep > 1 && prob[keep - 1] < floor) --keep;
  }
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    for (int32_t i = 0; i < keep; ++i) {
      cum += prob[i];
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0.0;
  for (int32_t i = 0; i < keep; ++i) total += prob[i];
  const double r = static_cast<double>(next_random(rng) >> 11) * 0x1.0p-53 * total;
  double cum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (r < cum) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace lmlab
