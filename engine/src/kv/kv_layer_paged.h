// KvLayerPaged: f32 K/V in fixed-size blocks from a KvBlockPool. With a sliding window, blocks that no
// future query can see are released (but one), so the layer's memory is bounded by window + one prefill
// chunk + two blocks whatever the context length. Full blocks may be shared (prompt cache); writes go copy-on-write.
#pragma once

#include <memory>
#include <vector>

#include "kv/kv_block_pool.h"
#include "kv/kv_layer.h"

namespace lmlab {

class KvLayerPaged final : public KvLayerCache {
 public:
  KvLayerPaged(KvBlockPool& pool, const KvGeometry& geo, int64_t window);

  void append(const float* k, const float* v, int64_t n) override;
  void attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const override;
  int64_t n_tokens() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  uint64_t bytes() const override;

  int64_t window() const { return window_; }
  // Blocks by index (block i holds positions [i * B, (i + 1) * B)); null where a window released it.
  const std::vector<std::shared_ptr<KvBlock>>& blocks() const { return blocks_; }
  // Starts this (empty) layer from shared blocks holding positions [0, n_tokens).
  void adopt(std::vector<std::shared_ptr<KvBlock>> blocks, int64_t n_tokens);
  // Lowest position any query at or after `pos` can still see.
  int64_t first_needed_position(int64_t pos) const { return window_ > 0 ? std::max<int64_t>(0, pos - window_ + 1) : 0; }

 private:
  KvBlockPool* pool_;
  KvGeometry geo_;
  int64_t window_;
  int64_t n_tokens_ = 0;
  std::vector<std::shared_ptr<KvBlock>> blocks_;
};

}  // namespace lmlab
