// Per-config quality from the raw per-sequence sums (Evaluation): the arithmetic lives here, the database holds
// only sums and token counts. Failed evaluations carry no figures and are left out.
#include <algorithm>
#include <cmath>

#include "lmlab/results.h"

namespace lmlab {

std::vector<QualitySummary> summarize_quality(const std::vector<Evaluation>& evaluations) {
  struct Acc {
    int64_t tokens = 0, kl_tokens = 0;
    double nll = 0, kl = 0;
    std::string reference;
  };
  std::vector<std::string> order;
  std::vector<Acc> acc;
  for (const Evaluation& q : evaluations) {
    if (q.error || q.tokens <= 0) continue;
    auto it = std::find(order.begin(), order.end(), q.config);
    if (it == order.end()) {
      order.push_back(q.config);
      acc.emplace_back();
      it = order.end() - 1;
    }
    Acc& a = acc[static_cast<size_t>(it - order.begin())];
    a.tokens += q.tokens;
    a.nll += q.nll_sum;
    if (q.kl_sum) {
      a.kl_tokens += q.tokens;
      a.kl += *q.kl_sum;
    }
    a.reference = q.reference_config;
  }
  std::vector<QualitySummary> out;
  for (size_t i = 0; i < order.size(); ++i) {
    const Acc& a = acc[i];
    QualitySummary s;
    s.config = order[i];
    s.tokens = a.tokens;
    s.perplexity = a.tokens > 0 ? std::exp(a.nll / static_cast<double>(a.tokens)) : 0.0;
    if (a.kl_tokens > 0) s.kl_divergence = a.kl / static_cast<double>(a.kl_tokens);
    s.reference_config = a.reference;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace lmlab
