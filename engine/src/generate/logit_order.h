// The order sampling and logprobs rank tokens by: logit descending, ties by the lower id, a NaN logit after every
// number. A strict weak order whatever a model emits: a NaN in a plain `>` comparator is undefined behaviour for
// std::sort (libstdc++'s unguarded insertion can run off the array).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace lmlab {

// Token a ranks before token b.
inline bool logit_ahead(std::span<const float> logits, int32_t a, int32_t b) {
  const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
  const bool na = std::isnan(la), nb = std::isnan(lb);
  if (na || nb) return na == nb ? a < b : nb;
  return la > lb || (la == lb && a < b);
}

// Every token id in logit_ahead's order: what std::sort with it gives, by a radix sort of the logits' bits (-0 as +0,
// every NaN after every number, ties by the lower id). Over 151,936 logits on the dev VM the comparison sort took 15 ms
// of CPU time, this 0.7 ms with branch-free keys (1.7 ms with branches; lmlab_bench BM_rank_comparison / BM_rank_radix).
std::vector<int32_t> ids_by_logit(std::span<const float> logits);

// The first n ids of that order (n at most logits.size()), without ranking the rest: up to 64 by one pass with a heap
// of the best so far, more by a histogram of the sort keys' top 16 bits (the bucket the n-th id falls in; only the ids
// up to it are sorted). What a top-k, min-p or top-p pick and logprobs' alternatives need: a few ranks, not 151,936.
std::vector<int32_t> first_ids_by_logit(std::span<const float> logits, size_t n);

// The first ids of that order whose weights (weights[id], non-increasing along it) reach `mass`, rounded up to the
// end of the histogram bucket where they do (so at least the exact prefix), and at most at_most of them: what a
// top-p filter needs ranked, from one pass of keys.
std::vector<int32_t> first_ids_holding(std::span<const float> logits, std::span<const float> weights, double mass,
                                       size_t at_most);

}  // namespace lmlab
