#include "kv/kv_layer_paged.h"

#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kv/blocked_attention.h"
#include "lmlab/error.h"

namespace lmlab {

KvLayerPaged::KvLayerPaged(KvBlockPool& pool, const KvGeometry& geo, int64_t window)
    : pool_(&pool), geo_(geo), window_(window) {}

void KvLayerPaged::append(const float* k, const float* v, int64_t n) {
  const int64_t B = pool_->block_tokens(), row = pool_->row_floats();
  // Queries of this chunk start at n_tokens_: release blocks entirely before what they can see, keeping one
  // block of margin so the prompt cache can resume this sequence at its last block boundary.
  if (window_ > 0) {
    const int64_t keep_from = first_needed_position(n_tokens_) / B - 1;
    for (int64_t b = 0; b < keep_from && b < static_cast<int64_t>(blocks_.size()); ++b) blocks_[b].reset();
  }
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = n_tokens_ + t, bi = pos / B, off = pos % B;
    if (bi >= static_cast<int64_t>(blocks_.size())) blocks_.push_back(pool_->allocate());
    auto& blk = blocks_[bi];
    if (!blk) throw Error(ErrorKind::internal, "kv cache", "write into a released block");
    if (blk.use_count() > 1) blk = pool_->clone(*blk);  // shared with the prompt cache: copy on write
    std::memcpy(blk->k.data() + off * row, k + t * row, sizeof(float) * row);
    std::memcpy(blk->v.data() + off * row, v + t * row, sizeof(float) * row);
  }
  n_tokens_ += n;
}

void KvLayerPaged::attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const {
  std::vector<const float*> kb(blocks_.size()), vb(blocks_.size());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    kb[i] = blocks_[i] ? blocks_[i]->k.data() : nullptr;
    vb[i] = blocks_[i] ? blocks_[i]->v.data() : nullptr;
  }
  if (geo_.head_dim % 16 != 0) {  // the blocked kernels work in 16-float vectors
    kernels::AttentionArgs a{q,         nullptr,         nullptr,         out,     n_q,          n_tokens_,
                             geo_.n_heads, geo_.n_kv_heads, geo_.head_dim, q_pos0, 0,            spec.scale,
                             spec.softcap, spec.window};
    a.k_blocks = kb.data();
    a.v_blocks = vb.data();
    a.block_tokens = pool_->block_tokens();
    kernels::attention(a);
    return;
  }
  // The blocked attention of the compressed caches, on f32 rows: key tiles scored against all query rows of a
  // GQA group at once and key ranges split over threads (flash-decoding), which the per-block kernel of
  // kernels::attention cannot do with 32-token pages (3-4x slower at 16K-32K).
  BlockedKvView view;
  view.n_kv_heads = geo_.n_kv_heads;
  view.head_dim = geo_.head_dim;
  view.block_tokens = pool_->block_tokens();
  view.n_tokens = n_tokens_;
  view.n_compressed = 0;
  view.hot_k = kb.data();
  view.hot_v = vb.data();
  view.hot_ld_token = geo_.n_kv_heads * geo_.head_dim;  // blocks are [token][kv head][head_dim]
  view.hot_ld_head = geo_.head_dim;
  blocked_attend(view, geo_.n_heads, q, n_q, q_pos0, spec, out);
}

void KvLayerPaged::truncate(int64_t n) {
  if (n >= n_tokens_) return;
  const int64_t B = pool_->block_tokens();
  blocks_.resize(static_cast<size_t>((n + B - 1) / B));
  n_tokens_ = n;
  // A window layer cannot recreate released positions: rewinding below them is a caller bug.
  if (window_ > 0 && n > 0 && !blocks_[first_needed_position(n - 1) / B])
    throw Error(ErrorKind::internal, "kv cache", "truncate into released window blocks");
}

uint64_t KvLayerPaged::bytes() const {
  uint64_t b = 0;
  for (const auto& blk : blocks_)
    if (blk) b += pool_->block_bytes();
  return b;
}

void KvLayerPaged::adopt(std::vector<std::shared_ptr<KvBlock>> blocks, int64_t n_tokens) {
  blocks_ = std::move(blocks);
  n_tokens_ = n_tokens;
}

}  // namespace lmlab
