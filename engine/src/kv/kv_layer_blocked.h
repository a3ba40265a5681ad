// KvLayerBlocked: the one KV layer of every mode. Positions live in blocks of the pool's block_tokens, each block
// holding the records of its positions for all KV heads in the codec of the layer's spec (f32 rows, TurboQuant,
// affine, f16), [K: n_kv_heads x block_tokens records][V: likewise]; so bytes() = exactly the allocated blocks and
// the pool's budget bounds every mode.
//   - Hot window (spec.hot_window > 0): the newest positions stay exact f32 rows in a second block table and are
//     encoded into records as they leave the window; after truncate() below the record frontier the window
//     refills with new tokens only. Positions [0, n_compressed()) are records, the rest hot rows.
//   - Sliding window (spec.window > 0): blocks that no future query can see are released (but one, so the prompt
//     cache can resume the sequence at its last block boundary): memory is bounded by window + one prefill chunk
//     + two blocks whatever the context length.
//   - Sharing: a full record block is immutable; the prompt cache and other sessions may hold it (adopt());
//     writes into a shared block go copy-on-write. Hot rows are never shared, so a layer with a hot window is not
//     shareable().
//   - Device layers: a backend whose pool allocates device memory writes and attends with its own kernels over
//     the same layout; extend() does the host part of an append (blocks, copy-on-write, window release) and
//     blocks() is what the kernels address. The backend keeps its per-layer state (a device copy of the block
//     table) in attachment(), which dies with the layer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "kv/codec/kv_codec_f32.h"
#include "kv/kv_block_pool.h"
#include "kv/kv_layer.h"
#include "kv/kv_layer_spec.h"

namespace lmlab {

struct BlockedKvView;

// Per-layer state a backend keeps with a layer (see attachment()).
class KvLayerAttachment {
 public:
  virtual ~KvLayerAttachment() = default;
};

class KvLayerBlocked final : public KvLayerCache {
 public:
  // Throws invalid_input naming the geometry when it is not a GQA one.
  KvLayerBlocked(KvBlockPool& pool, KvLayerSpec spec);

  void append(const float* k, const float* v, int64_t n) override;
  void attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const override;
  int64_t n_tokens() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  uint64_t bytes() const override;

  // attend() through the plain reference of the blocked attention (blocked_attend_ref); for tests.
  void attend_reference(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const;

  const KvLayerSpec& spec() const { return spec_; }
  int64_t block_tokens() const { return pool_->block_tokens(); }
  int64_t n_compressed() const { return n_compressed_; }
  uint64_t record_bytes_per_token() const;  // n_kv_heads * (K record + V record)
  uint64_t hot_bytes_per_token() const;     // n_kv_heads * head_dim * 2 * 4
  // What attention sees at position pos < n_tokens(), back in the input domain: k, v [n_kv_heads, head_dim]
  // (records: the codec's dequantize; hot: the exact rows). For tests and diagnostics.
  void reconstruct(int64_t pos, float* k, float* v) const;

  // Whether the sequence can be cut back to n positions (a sliding window may have released what they need).
  bool can_truncate(int64_t n) const;
  bool shareable() const { return spec_.hot_window == 0; }
  // Record blocks by index (block i holds positions [i B, (i + 1) B)); null where a window released it.
  const std::vector<std::shared_ptr<KvBlock>>& blocks() const { return blocks_; }
  // Starts this (empty, shareable) layer from shared blocks holding positions [0, n_tokens).
  void adopt(std::vector<std::shared_ptr<KvBlock>> blocks, int64_t n_tokens);
  // append() for device backends, without the encoding: the layer holds positions [n_tokens(), n_tokens() + n)
  // in writable blocks (allocated, or copied when shared) for the backend's kernels to write, and releases what
  // its sliding window no longer needs. The backend's kernels apply the spec's rotation and codecs themselves. Only
  // for specs without a hot window (internal error otherwise); out_of_memory leaves the layer as it was.
  void extend(int64_t n);
  std::unique_ptr<KvLayerAttachment>& attachment() const { return attachment_; }
  // The lowest index of blocks() whose entry changed (allocated, copied on write, released, adopted) since the last
  // call (INT64_MAX when none; 0 before the first), and a new count from here: the attachment that mirrors the table
  // on a device walks only what changed, where a full walk cost every decode step O(context) (with the release's
  // own walk, 36 layers of 3,125 blocks at 100K: 0.54 ms of host time a step on the development VM).
  int64_t take_first_changed_block() { return std::exchange(first_changed_, kNoChange); }
  // Lowest position any query at or after `pos` can still see.
  int64_t first_needed_position(int64_t pos) const {
    return spec_.window > 0 ? std::max<int64_t>(0, pos - spec_.window + 1) : 0;
  }

 private:
  // One block table and the codecs of its records.
  struct Table {
    const KvCodec* k;
    const KvCodec* v;
    std::vector<std::shared_ptr<KvBlock>>* blocks;
    uint64_t block_bytes;
    int64_t* null_below;  // every entry below it is null
  };
  Table records();
  Table hot();
  uint8_t* writable_block(const Table& t, int64_t b);
  // Encodes positions [p0, p0 + n) into t; the working-domain row of position p0 + i and KV head h is at
  // k_src / v_src + i * ld_token + h * ld_head.
  void write_rows(const Table& t, int64_t p0, int64_t n, const float* k_src, const float* v_src, int64_t ld_token,
                  int64_t ld_head);
  void append_rows(const float* k, const float* v, int64_t n, int64_t target);
  void pack_hot(int64_t p_end);
  void release_blocks(int64_t next_query_pos);
  // Resets entries [from, to) of t (clamped to its size), noting each one that held a block.
  void reset_blocks(std::vector<std::shared_ptr<KvBlock>>& t, int64_t from, int64_t to);
  void changed(const std::vector<std::shared_ptr<KvBlock>>& t, int64_t b) {
    if (&t == &blocks_) first_changed_ = std::min(first_changed_, b);
  }
  bool holds(int64_t pos) const;
  // What the attention reads: the block tables as pointers (into ptrs, which must outlive the view).
  BlockedKvView view(std::vector<const uint8_t*> (&ptrs)[2]) const;

  KvBlockPool* pool_;
  KvLayerSpec spec_;
  KvCodecF32 hot_codec_;
  std::vector<std::shared_ptr<KvBlock>> blocks_;  // records
  std::vector<std::shared_ptr<KvBlock>> hot_;     // f32 rows of the hot window
  int64_t n_tokens_ = 0, n_compressed_ = 0;
  // Below these every entry of blocks_ / hot_ is null (released by a window or packed), so a release starts there
  // instead of walking the whole table each step.
  int64_t records_null_below_ = 0, hot_null_below_ = 0;
  static constexpr int64_t kNoChange = INT64_MAX;
  int64_t first_changed_ = 0;  // see take_first_changed_block()
  mutable std::unique_ptr<KvLayerAttachment> attachment_;
};

}  // namespace lmlab
