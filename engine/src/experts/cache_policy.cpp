// Expert cache eviction policies (see cache_policy.h for the reasoning) and a trace simulator.
#include "experts/cache_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab {

namespace {

class LruPolicy final : public CachePolicy {
 public:
  LruPolicy(int64_t L, int64_t E) : CachePolicy(L, E), last_(static_cast<size_t>(L * E), 0) {}
  void on_request(int32_t m, std::span<const int32_t> experts) override {
    ++tick_;
    for (int32_t e : experts) last_[m * E_ + e] = tick_;
  }
  void on_insert(int32_t m, int32_t e, bool) override { last_[m * E_ + e] = tick_; }
  double eviction_score(int32_t m, int32_t e) const override { return -static_cast<double>(last_[m * E_ + e]); }

 private:
  uint64_t tick_ = 0;
  std::vector<uint64_t> last_;
};

class ReusePolicy final : public CachePolicy {
 public:
  ReusePolicy(int64_t L, int64_t E, const CachePolicyOptions& o)
      : CachePolicy(L, E),
        slow_(L, E, o.reuse_decay_slow, o.top_k),
        fast_(L, E, o.reuse_decay_fast, o.top_k),
        visits_(static_cast<size_t>(L), 0) {}

  void on_request(int32_t m, std::span<const int32_t> experts) override {
    now_ = m;
    const uint64_t v = ++visits_[m];
    for (int32_t e : experts) {
      const size_t k = static_cast<size_t>(m * E_ + e);
      slow_.pick(k, v);
      fast_.pick(k, v);
    }
  }
  void on_insert(int32_t, int32_t, bool) override {}
  double eviction_score(int32_t m, int32_t e) const override {
    const size_t k = static_cast<size_t>(m * E_ + e);
    const double p = std::max({slow_.at(k, visits_[m]), fast_.at(k, visits_[m]), 1e-6});
    const int64_t d = ((m - now_ - 1) % L_ + L_) % L_ + 1;  // layer-steps until layer m runs again
    return static_cast<double>(d) + static_cast<double>(L_) * (1.0 - p) / p;
  }
  bool admit_prefetch(int32_t m, int32_t e, int32_t vm, int32_t ve) const override {
    return eviction_score(vm, ve) > eviction_score(m, e);
  }

 private:
  // Per key, an exponentially decayed frequency of being picked at its layer's visits, stored as of the
  // visit it was last picked at and decayed lazily over the visits since.
  struct Ema {
    Ema(int64_t L, int64_t E, double a, int64_t top_k)
        : a(std::clamp(a, 1e-6, 1.0 - 1e-9)),
          log_keep(std::log1p(-this->a)),
          p(static_cast<size_t>(L * E), std::clamp(static_cast<double>(top_k) / static_cast<double>(E), 1e-3, 1.0)),
          seen(static_cast<size_t>(L * E), 0) {}
    double at(size_t k, uint64_t visit) const {
      const uint64_t missed = visit > seen[k] ? visit - seen[k] : 0;
      return missed == 0 ? p[k] : p[k] * std::exp(log_keep * static_cast<double>(missed));
    }
    void pick(size_t k, uint64_t visit) {  // picked at `visit`
      p[k] = at(k, visit - 1) * (1.0 - a) + a;
      seen[k] = visit;
    }
    double a, log_keep;
    std::vector<double> p;       // [L * E]
    std::vector<uint64_t> seen;  // [L * E]
  };

  Ema slow_, fast_;
  int32_t now_ = -1;
  std::vector<uint64_t> visits_;  // [L]
};

}  // namespace

std::string_view cache_policy_name(CachePolicyKind k) { return k == CachePolicyKind::lru ? "lru" : "reuse"; }

CachePolicyKind parse_cache_policy(std::string_view name) {
  if (name == "lru") return CachePolicyKind::lru;
  if (name == "reuse") return CachePolicyKind::reuse;
  throw Error(ErrorKind::invalid_input, std::string(option_flag("expert_cache_policy")),
              fmt::format("unknown expert cache policy '{}' (lru | reuse)", name));
}

std::unique_ptr<CachePolicy> make_cache_policy(CachePolicyKind kind, int64_t n_layers, int64_t n_experts,
                                               const CachePolicyOptions& options) {
  if (kind == CachePolicyKind::lru) return std::make_unique<LruPolicy>(n_layers, n_experts);
  return std::make_unique<ReusePolicy>(n_layers, n_experts, options);
}

double simulate_expert_cache(CachePolicyKind kind, int64_t capacity, int64_t n_layers, int64_t n_experts,
                             const std::vector<std::vector<int32_t>>& trace, const CachePolicyOptions& options) {
  CachePolicyOptions o = options;
  if (o.top_k <= 0)
    for (const auto& v : trace) o.top_k = std::max<int64_t>(o.top_k, static_cast<int64_t>(v.size()));
  auto policy = make_cache_policy(kind, n_layers, n_experts, o);
  std::vector<char> cached(static_cast<size_t>(n_layers * n_experts), 0), pinned(cached.size(), 0);
  std::vector<int32_t> resident;  // keys
  uint64_t hits = 0, total = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    const int32_t m = static_cast<int32_t>(i % n_layers);
    const auto& visit = trace[i];
    if (static_cast<int64_t>(visit.size()) > capacity)
      throw Error(ErrorKind::invalid_input, "simulate_expert_cache",
                  fmt::format("a visit needs {} experts but the cache holds {}", visit.size(), capacity));
    policy->on_request(m, visit);
    for (int32_t e : visit) pinned[m * n_experts + e] = 1;
    for (int32_t e : visit) {
      const int32_t key = static_cast<int32_t>(m * n_experts + e);
      ++total;
      if (cached[key]) {
        ++hits;
        continue;
      }
      if (static_cast<int64_t>(resident.size()) >= capacity) {
        size_t best = resident.size();
        double best_score = -std::numeric_limits<double>::infinity();
        for (size_t r = 0; r < resident.size(); ++r) {
          const int32_t k = resident[r];
          if (pinned[k]) continue;
          const double s = policy->eviction_score(static_cast<int32_t>(k / n_experts), static_cast<int32_t>(k % n_experts));
          if (s > best_score) best_score = s, best = r;
        }
        cached[resident[best]] = 0;
        resident[best] = resident.back();
        resident.pop_back();
      }
      cached[key] = 1;
      resident.push_back(key);
      policy->on_insert(m, e, false);
    }
    for (int32_t e : visit) pinned[m * n_experts + e] = 0;
  }
  return total ? static_cast<double>(hits) / static_cast<double>(total) : 0.0;
}

}  // namespace lmlab
