// Eviction policies of the expert cache, over keys (MoE layer position m in [0, L), expert e in [0, E)).
//
// lru: evict the expert used least recently.
//
// reuse (the default): evict the expert expected to be needed last. Decoding visits the MoE layers in a
// fixed cycle 0, 1, ..., L-1, 0, ..., so an expert of layer m cannot be needed before the forward pass comes
// back to m: d(m) in [1, L] layer-steps from now. Each time it does, the router picks the expert with a
// probability p that we track per expert as an exponentially decayed frequency (p <- p(1-a) + a when picked,
// p <- p(1-a) when its layer is visited without it), twice: a slow one (a = 0.02) for popularity and a fast
// one (a = 0.7) for recency, as trained routers often repeat a token's experts for the next tokens; p is the
// larger of the two. With a geometric number of misses the expected wait is
//     T(m, e) = d(m) + L (1 - p) / p   layer-steps,
// and evicting the largest T approximates Belady's optimal rule under that model.
// Why not LRU: the layer cycle is LRU's worst case. While a token runs layers m+1 .. L-1, 0 .. m-1, every
// other layer's experts are touched, so when the cache holds fewer experts than one token uses across all
// layers (the streaming regime: L * top_k experts per token), LRU evicts exactly the experts of the layers
// coming next. It also forgets popularity: a hot expert and a one-off look the same once both are older
// than a cycle. T keeps the hot experts (high p) and the experts of the next layers (small d), which is
// also where read-ahead puts predicted experts. cache_policy_test and `lmlab_bench` compare both on traces.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace lmlab {

enum class CachePolicyKind { lru, reuse };
std::string_view cache_policy_name(CachePolicyKind k);
CachePolicyKind parse_cache_policy(std::string_view name);  // "lru" | "reuse"; throws invalid_input

class CachePolicy {
 public:
  CachePolicy(int64_t n_layers, int64_t n_experts) : L_(n_layers), E_(n_experts) {}
  virtual ~CachePolicy() = default;

  // A router asked for these (distinct) experts of layer m: the demand access, in forward order.
  virtual void on_request(int32_t m, std::span<const int32_t> experts) = 0;
  // (m, e) was put in the cache, on demand or as a prefetch.
  virtual void on_insert(int32_t m, int32_t e, bool prefetch) = 0;
  // Larger = evicted sooner. Only compared between keys at one moment.
  virtual double eviction_score(int32_t m, int32_t e) const = 0;
  // May a read-ahead of (m, e) evict (vm, ve)? (A prediction should not push out something more valuable.)
  virtual bool admit_prefetch(int32_t m, int32_t e, int32_t vm, int32_t ve) const { return true; }

  int64_t n_layers() const { return L_; }
  int64_t n_experts() const { return E_; }

 protected:
  int64_t L_, E_;
};

struct CachePolicyOptions {
  int64_t top_k = 0;               // the router's k (0 = the model's): the prior of p is top_k / n_experts
  double reuse_decay_slow = 0.02;  // `a` of the popularity estimate (~50 visits of memory)
  double reuse_decay_fast = 0.7;   // `a` of the recency estimate (routers repeat themselves across tokens)
};

std::unique_ptr<CachePolicy> make_cache_policy(CachePolicyKind kind, int64_t n_layers, int64_t n_experts,
                                               const CachePolicyOptions& options = {});

// Replays a routing trace through a cache of `capacity` experts (no prefetch) and returns its hit rate.
// trace[i]: the distinct experts chosen at the i-th MoE layer visit; the visit's layer is i % n_layers.
// For policy studies (tests, benchmarks); capacity must be >= the largest visit.
double simulate_expert_cache(CachePolicyKind kind, int64_t capacity, int64_t n_layers, int64_t n_experts,
                             const std::vector<std::vector<int32_t>>& trace, const CachePolicyOptions& options = {});

}  // namespace lmlab
