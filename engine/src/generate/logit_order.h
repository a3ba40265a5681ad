// The order sampling and logprobs rank tokens by: logit descending, ties by the lower id, a NaN logit after every
// number. A strict weak order whatever a model emits: a NaN in a plain `>` comparator is undefined behaviour for
// std::sort (libstdc++'s unguarded insertion can run off the array).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace lmlab {

// Token a ranks before token b.
inline bool logit_ahead(std::span<const float> logits, int32_t a, int32_t b) {
  const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
  const bool na = std::isnan(la), nb = std::isnan(lb);
  if (na || nb) return na == nb ? a < b : nb;
  return la > lb || (la == lb && a < b);
}

}  // namespace lmlab
