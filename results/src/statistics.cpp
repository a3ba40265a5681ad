// Statistics over raw samples: per (config, context) summaries and the regression gate.
// Rates are computed here from token counts and nanoseconds; nothing derived is stored in the database.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "lmlab/results.h"

namespace lmlab {
namespace {

using GroupKey = std::pair<std::string, int64_t>;  // (config, context_tokens)

bool usable(const Sample& s) { return !s.error && s.decode_ns > 0 && s.decode_tokens > 0; }

double decode_tok_s(const Sample& s) {
  return static_cast<double>(s.decode_tokens) / (static_cast<double>(s.decode_ns) * 1e-9);
}

// Decode tok/s of the usable samples of each group.
std::map<GroupKey, std::vector<double>> decode_rates(const std::vector<Sample>& samples) {
  std::map<GroupKey, std::vector<double>> out;
  for (const Sample& s : samples) {
    auto& v = out[{s.config, s.context_tokens}];
    if (usable(s)) v.push_back(decode_tok_s(s));
  }
  return out;
}

}  // namespace

double quantile(std::vector<double> values, double p) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double median_drive_read_bps(const std::vector<const Sample*>& samples) {
  std::vector<double> v;
  for (const Sample* s : samples)
    if (s->drive_read_bps > 0) v.push_back(s->drive_read_bps);
  return v.empty() ? 0.0 : quantile(v, 0.5);
}

std::vector<Summary> summarize(const std::vector<Sample>& samples) {
  std::map<GroupKey, std::vector<const Sample*>> groups;
  for (const Sample& s : samples) groups[{s.config, s.context_tokens}].push_back(&s);

  std::vector<Summary> out;
  for (const auto& [key, members] : groups) {
    Summary sum;
    sum.config = key.first;
    sum.context = key.second;
    std::vector<double> rates, ttft_ms, ssd;
    for (const Sample* s : members) {
      if (!usable(*s)) {
        ++sum.errors;
        continue;
      }
      rates.push_back(decode_tok_s(*s));
      ttft_ms.push_back(static_cast<double>(s->ttft_ns) / 1e6);
      ssd.push_back(static_cast<double>(s->ssd_bytes_read));
      sum.peak_memory_bytes_max = std::max(sum.peak_memory_bytes_max, s->peak_memory_bytes);
    }
    sum.n = static_cast<int>(rates.size());
    if (sum.n > 0) {
      sum.decode_tok_s_median = quantile(rates, 0.5);
      sum.decode_tok_s_p10 = quantile(rates, 0.1);
      sum.decode_tok_s_p90 = quantile(rates, 0.9);
      sum.ttft_ms_median = quantile(ttft_ms, 0.5);
      sum.ssd_bytes_read_median = quantile(ssd, 0.5);
    }
    out.push_back(std::move(sum));
  }
  return out;
}

double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n1 = a.size(), n2 = b.size(), n = n1 + n2;
  if (n1 == 0 || n2 == 0) return 1.0;
  // Pool, sort, and give tied values their average rank (ranks are 1-based).
  std::vector<std::pair<double, int>> pooled;  // (value, 0 = from a, 1 = from b)
  for (double x : a) pooled.emplace_back(x, 0);
  for (double x : b) pooled.emplace_back(x, 1);
  std::sort(pooled.begin(), pooled.end());
  double rank_sum_a = 0, tie_term = 0;  // tie_term = sum over tie groups of (t^3 - t)
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && pooled[j].first == pooled[i].first) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k)
      if (pooled[k].second == 0) rank_sum_a += avg_rank;
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  const double dn1 = static_cast<double>(n1), dn2 = static_cast<double>(n2), dn = static_cast<double>(n);
  const double u = rank_sum_a - dn1 * (dn1 + 1) / 2;
  const double mean = dn1 * dn2 / 2;
  const double var = dn1 * dn2 / 12 * ((dn + 1) - tie_term / (dn * (dn - 1)));
  if (var <= 0) return 1.0;  // every value tied
  const double z = std::max(0.0, std::fabs(u - mean) - 0.5) / std::sqrt(var);  // continuity correction
  return std::erfc(z / std::sqrt(2.0));
}

std::vector<GateResult> gate(const std::vector<Sample>& baseline, const std::vector<Sample>& candidate,
                             double threshold, double alpha) {
  const auto base = decode_rates(baseline);
  const auto cand = decode_rates(candidate);
  std::map<GroupKey, GateResult> results;
  auto result_for = [&](const GroupKey& key) -> GateResult& {
    GateResult& r = results[key];
    r.config = key.first;
    r.context = key.second;
    return r;
  };
  for (const auto& [key, rates] : base) {
    GateResult& r = result_for(key);
    r.n_baseline = static_cast<int>(rates.size());
    if (!rates.empty()) r.baseline_decode_tok_s_median = quantile(rates, 0.5);
  }
  for (const auto& [key, rates] : cand) {
    GateResult& r = result_for(key);
    r.n_candidate = static_cast<int>(rates.size());
    if (!rates.empty()) r.candidate_decode_tok_s_median = quantile(rates, 0.5);
  }
  std::vector<GateResult> out;
  for (auto& [key, r] : results) {
    r.compared = r.n_baseline > 0 && r.n_candidate > 0 && r.baseline_decode_tok_s_median > 0;
    if (r.compared) {
      r.relative_change =
          (r.candidate_decode_tok_s_median - r.baseline_decode_tok_s_median) / r.baseline_decode_tok_s_median;
      r.p_value = mann_whitney_p(base.at(key), cand.at(key));
      r.regression = r.relative_change < -threshold && r.p_value < alpha;
    }
    out.push_back(r);
  }
  return out;
}

bool any_regression(const std::vector<GateResult>& results) {
  return std::any_of(results.begin(), results.end(), [](const GateResult& r) { return r.regression; });
}

}  // namespace lmlab
