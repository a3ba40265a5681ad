// KvBlockPool: the memory of every KV cache. A block holds block_tokens positions of one layer's records (its
// size is the layer's codec's: f32 rows, TurboQuant records, the hot window's f32 rows), so one byte budget
// (--kv-budget-mb) bounds every mode and allocated_bytes() is lmlab_kv_cache_bytes, exactly. Blocks are
// reference-counted: a full block is immutable and may be shared by several sessions and the prompt cache at
// once; the last reference returns its bytes. The bytes come from a KvBlockAllocator (host by default).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "kv/kv_block_allocator.h"

namespace lmlab {

struct KvBlock {
  uint8_t* data = nullptr;  // from the pool's allocator; 64-byte aligned
  uint64_t bytes = 0;
};

class KvBlockPool {
 public:
  // budget_bytes 0 = unlimited.
  explicit KvBlockPool(int64_t block_tokens, uint64_t budget_bytes = 0,
                       std::shared_ptr<KvBlockAllocator> allocator = host_kv_allocator());

  int64_t block_tokens() const { return block_tokens_; }

  // Throws out_of_memory (naming the budget) when the budget would be exceeded or the allocator has no memory.
  std::shared_ptr<KvBlock> allocate(uint64_t bytes);
  // A private copy of a shared block (copy-on-write before writing into it).
  std::shared_ptr<KvBlock> clone(const KvBlock& src);

  uint64_t allocated_bytes() const { return live_->load(); }  // lmlab_kv_cache_bytes
  uint64_t peak_bytes() const { return peak_.load(); }
  uint64_t budget_bytes() const { return budget_; }

 private:
  int64_t block_tokens_;
  uint64_t budget_;
  std::shared_ptr<KvBlockAllocator> allocator_;
  std::shared_ptr<std::atomic<uint64_t>> live_;  // outlives the pool while blocks are alive
  std::atomic<uint64_t> peak_{0};
};

}  // namespace lmlab
