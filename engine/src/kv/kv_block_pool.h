// KvBlockPool: fixed-size KV blocks (block_tokens positions of one layer's K and V) with exact byte
// accounting and an optional byte budget. Blocks are reference-counted: a full block is immutable and may be
// shared by several sessions and the prompt cache at once; the last reference returns its bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace lmlab {

struct KvBlock {
  std::vector<float> k, v;  // [block_tokens, n_kv_heads, head_dim] each
};

class KvBlockPool {
 public:
  // budget_bytes 0 = unlimited.
  KvBlockPool(int64_t block_tokens, int64_t row_floats, uint64_t budget_bytes = 0);

  int64_t block_tokens() const { return block_tokens_; }
  int64_t row_floats() const { return row_floats_; }  // n_kv_heads * head_dim
  uint64_t block_bytes() const { return static_cast<uint64_t>(2 * block_tokens_ * row_floats_) * sizeof(float); }

  // Throws out_of_memory (naming the budget) when the budget would be exceeded.
  std::shared_ptr<KvBlock> allocate();
  // A private copy of a shared block (copy-on-write before writing into it).
  std::shared_ptr<KvBlock> clone(const KvBlock& src);

  uint64_t allocated_bytes() const { return allocated_.load(); }  // lmlab_kv_cache_bytes
  uint64_t peak_bytes() const { return peak_.load(); }
  uint64_t budget_bytes() const { return budget_; }

 private:
  std::shared_ptr<KvBlock> wrap(KvBlock* b);

  int64_t block_tokens_, row_floats_;
  uint64_t budget_;
  std::shared_ptr<std::atomic<uint64_t>> live_;  // outlives the pool while blocks are alive
  std::atomic<uint64_t>& allocated_;
  std::atomic<uint64_t> peak_{0};
};

}  // namespace lmlab
