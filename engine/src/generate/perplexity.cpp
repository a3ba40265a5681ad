#include "lmlab/perplexity.h"

#include <algorithm>
#include <cmath>

#include "lmlab/error.h"

namespace lmlab {

double NllResult::mean_nll() const {
  double s = 0.0;
  for (double x : nll) s += x;
  return nll.empty() ? 0.0 : s / static_cast<double>(nll.size());
}

double NllResult::perplexity() const { return std::exp(mean_nll()); }

double log_prob(std::span<const float> logits, int32_t target) {
  const float m = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - m);
  return static_cast<double>(logits[target]) - m - std::log(sum);
}

NllResult evaluate_nll(const Model& model, std::span<const int32_t> ids) {
  if (ids.size() < 2) throw Error(ErrorKind::invalid_input, "ids", "perplexity needs at least two tokens");
  auto session = model.new_session();
  const int64_t vocab = model.info().vocab, chunk = model.options().prefill_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  NllResult r;
  r.nll.reserve(static_cast<size_t>(n - 1));
  for (int64_t off = 0; off < n - 1; off += chunk) {
    const int64_t m = std::min(chunk, n - 1 - off);
    auto logits = session->append(ids.subspan(off, m), /*all_logits=*/true);
    for (int64_t t = 0; t < m; ++t) r.nll.push_back(-log_prob(logits.subspan(t * vocab, vocab), ids[off + t + 1]));
  }
  return r;
}

}  // namespace lmlab
