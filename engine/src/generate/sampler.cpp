// Token sampling: greedy, or temperature with top-k / top-p / min-p filtering, from a seeded xorshift RNG
// so runs are reproducible.
//
// A sampled pick is host time a GPU decode step waits for, so it ranks no more of the vocabulary than its filters
// can keep. The weights w = e^((l - max) / T) come from one vector pass (kernels::cpu::scaled_exp). The filters keep
// a prefix of the ranking (logit_ahead's order): the top_k first; then those with w >= min_p (prob >= min_p x the
// first's); then the shortest prefix whose probability (over the top_k) reaches top_p. Without top_k and top_p the
// kept set is a threshold on w, so the token is drawn in id order over it, unranked; otherwise only the ranking's
// first ids are computed: the top_k (first_ids_by_logit), or as many as top_p's prefix can reach (first_ids_holding,
// a histogram of the logits' keys with their weights), or min_p's.
// The draw order changes which random number picks a token, not its probability: the tokens and their weights are
// those of ranking the whole vocabulary (what this did before, 4.9 ms a pick over 151,936 logits on the dev VM).
#include <algorithm>
#include <cmath>
#include <span>
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

// A uniform draw in [0, total).
double uniform_below(uint64_t& rng, double total) {
  return static_cast<double>(next_random(rng) >> 11) * 0x1.0p-53 * total;
}

// A draw over ids (in the order given) by their weights; total: their sum.
int32_t draw(const std::vector<float>& w, std::span<const int32_t> ids, double total, uint64_t& rng) {
  const double r = uniform_below(rng, total);
  double cum = 0.0;
  for (const int32_t id : ids)
    if ((cum += w[id]) > r) return id;
  return ids.back();  // r at the sum's last bits
}

// A draw over the whole vocabulary in id order (total: the weights' sum, added in another order).
int32_t draw_all(const std::vector<float>& w, double total, uint64_t& rng) {
  const double r = uniform_below(rng, total);
  double cum = 0.0;
  int32_t last = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] == 0.0f) continue;  // a NaN logit's weight: never drawn
    last = static_cast<int32_t>(i);
    if ((cum += w[i]) > r) return last;
  }
  return last;  // r at the sum's last bits
}
}  // namespace

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, uint64_t& rng) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  // The first largest logit, NaNs never winning (every logit NaN: 0), in two vector passes (kernels/cpu/argmax.cpp).
  const int32_t best = static_cast<int32_t>(kernels::cpu::argmax(logits.data(), vocab));
  if (p.temperature <= 0.0f) return best;
  const float max_l = logits[best];
  // Every logit NaN (nothing to weigh), or an infinite one (it outweighs every number): the first largest.
  if (std::isnan(max_l) || std::isinf(max_l)) return best;
  thread_local std::vector<float> w;
  w.resize(static_cast<size_t>(vocab));
  const double sum_all = kernels::cpu::scaled_exp(logits.data(), vocab, max_l, 1.0f / p.temperature, w.data());
  const int64_t k = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
  // min_p: the first ranked has w = 1, so prob >= min_p x its prob is w >= min_p; it always stays.
  const float floor = std::min(std::max(p.min_p, 0.0f), 1.0f);
  if (k == vocab && p.top_p >= 1.0f) {  // the kept set is a threshold on w: no ranking
    if (floor <= 0.0f) return draw_all(w, sum_all, rng);
    thread_local std::vector<int32_t> kept;
    kept.clear();
    double total = 0.0;
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] >= floor) kept.push_back(static_cast<int32_t>(i)), total += w[i];
    return draw(w, kept, total, rng);
  }
  int64_t n_floor = vocab;  // tokens min_p keeps (a prefix of the ranking: w falls with it)
  if (floor > 0.0f) n_floor = std::count_if(w.begin(), w.end(), [&](float x) { return x >= floor; });
  const int64_t limit = std::min(k, n_floor);  // no filter below keeps more
  // The ranks to compute: the top_k's (their weight is top_p's denominator), else as many as top_p's prefix can reach
  // (of the whole vocabulary's weight, which is at least the top_k's), else min_p's.
  std::vector<int32_t> ids = k < vocab         ? first_ids_by_logit(logits, static_cast<size_t>(k))
                             : p.top_p < 1.0f ? first_ids_holding(logits, w, p.top_p * sum_all, static_cast<size_t>(limit))
                                              : first_ids_by_logit(logits, static_cast<size_t>(limit));
  int64_t keep = 0;
  for (;;) {
    const int64_t n = static_cast<int64_t>(ids.size());
    double sum_k = sum_all;  // the top_k's weight, which top_p's probabilities are over
    if (k < vocab) {
      sum_k = 0.0;
      for (int64_t i = 0; i < k; ++i) sum_k += w[ids[i]];
    }
    keep = std::min(n, limit);
    if (p.top_p >= 1.0f) break;
    double cum = 0.0;
    int64_t i = 0;
    while (i < keep && (cum += w[ids[i]] / sum_k) < p.top_p) ++i;
    if (i < keep) {
      keep = i + 1;
      break;
    }
    if (n >= limit) break;  // every filter's prefix is ranked: top_p keeps all of it
    // The bucket sums reached top_p where the prefix's own sum did not (rounding): rank the rest.
    ids = first_ids_by_logit(logits, static_cast<size_t>(limit));
  }
  ids.resize(static_cast<size_t>(keep));
  double total = 0.0;
  for (const int32_t id : ids) total += w[id];
  return draw(w, ids, total, rng);
}

}  // namespace lmlab
