// PromptCache: KV blocks of earlier prompts, shared by prefix. Token blocks form a hash chain (a radix tree
// with block-sized edges): node i is keyed by hash(node i-1, tokens of block i) and holds, per layer, the
// immutable KV block for those positions. Many entries; a shared prefix is stored once; least recently used
// leaves are evicted under a byte budget. Sliding-window layers only keep the blocks their window still
// covered when the sequence was stored, so a prefix whose window state is gone is a shorter hit (never a
// wrong one). Blocks are whatever the layers' codecs store (f32 rows, TurboQuant records): the cache only holds
// references. Thread-safe: concurrent sessions look up and insert.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "kv/kv_block_pool.h"

namespace lmlab {

class PromptCache {
 public:
  PromptCache(int64_t block_tokens, uint64_t budget_bytes, std::vector<int64_t> layer_windows);

  struct Hit {
    int64_t n_tokens = 0;                                     // reusable prefix length (block aligned)
    std::vector<std::vector<std::shared_ptr<KvBlock>>> layers;  // per layer, blocks [0, n_tokens / B)
  };
  // Longest reusable prefix of tokens of at most max_tokens tokens.
  Hit lookup(std::span<const int32_t> tokens, int64_t max_tokens);
  // Stores the full blocks of a sequence of n_tokens positions holding tokens: per layer its block table (block i
  // holds positions [i B, (i + 1) B), null where released).
  void insert(std::span<const int32_t> tokens, int64_t n_tokens,
              const std::vector<const std::vector<std::shared_ptr<KvBlock>>*>& layers);

  struct Stats {
    uint64_t bytes = 0, nodes = 0, lookups = 0, hits = 0, hit_tokens = 0, evictions = 0;
  };
  Stats stats() const;
  void clear();

 private:
  struct Node {
    uint64_t parent = 0;
    int64_t depth = 0;  // block index
    std::vector<int32_t> tokens;
    std::vector<std::shared_ptr<KvBlock>> blocks;  // per layer; null where a window had released it
    uint64_t last_used = 0;
    int64_t children = 0;
  };
  uint64_t node_bytes(const Node& n) const;
  void evict_to_budget();

  int64_t block_tokens_;
  uint64_t budget_;
  std::vector<int64_t> windows_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Node> nodes_;
  uint64_t clock_ = 0;
  Stats stats_;
};

}  // namespace lmlab
