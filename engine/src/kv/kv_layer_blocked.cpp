// The blocked KV layer of every mode (see kv_layer_blocked.h).
#include "kv/kv_layer_blocked.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kv/attention/blocked_attention.h"
#include "lmlab/error.h"
#include "util/thread_pool.h"

namespace lmlab {

namespace {

constexpr int64_t kAppendChunk = 256;  // tokens rotated per step of append (bounds its scratch)

const KvLayerSpec& checked(const KvLayerSpec& s) {
  const KvGeometry& g = s.geo;
  if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.head_dim <= 0 || g.n_heads % g.n_kv_heads != 0)
    throw Error(ErrorKind::invalid_input, "kv cache",
                "bad KV geometry: " + std::to_string(g.n_heads) + " heads, " + std::to_string(g.n_kv_heads) +
                    " KV heads, head_dim " + std::to_string(g.head_dim));
  if (!s.k_codec || !s.v_codec || s.k_codec->head_dim() != g.head_dim || s.v_codec->head_dim() != g.head_dim)
    throw Error(ErrorKind::internal, "kv cache", "the layer's codecs do not match its head_dim");
  if (s.hot_window > 0 && (g.head_dim % 16 != 0 || s.v_codec->row_floats() != g.head_dim))
    throw Error(ErrorKind::unsupported, "kv cache", "a hot window needs head_dim % 16 == 0");
  return s;
}

void drop_trailing_nulls(std::vector<std::shared_ptr<KvBlock>>& t) {
  while (!t.empty() && !t.back()) t.pop_back();
}

}  // namespace

KvLayerBlocked::KvLayerBlocked(KvBlockPool& pool, KvLayerSpec spec)
    : pool_(&pool), spec_(checked(spec)), hot_codec_(spec_.geo.head_dim) {}

uint64_t KvLayerBlocked::record_bytes_per_token() const {
  return static_cast<uint64_t>(spec_.geo.n_kv_heads * (spec_.k_codec->record_bytes() + spec_.v_codec->record_bytes()));
}

uint64_t KvLayerBlocked::hot_bytes_per_token() const {
  return static_cast<uint64_t>(spec_.geo.n_kv_heads * 2 * hot_codec_.record_bytes());
}

KvLayerBlocked::Table KvLayerBlocked::records() {
  return {spec_.k_codec.get(), spec_.v_codec.get(), &blocks_, block_tokens() * record_bytes_per_token(),
          &records_null_below_};
}

KvLayerBlocked::Table KvLayerBlocked::hot() {
  return {&hot_codec_, &hot_codec_, &hot_, block_tokens() * hot_bytes_per_token(), &hot_null_below_};
}

uint64_t KvLayerBlocked::bytes() const {
  uint64_t b = 0;
  for (const auto* t : {&blocks_, &hot_})
    for (const auto& blk : *t)
      if (blk) b += blk->bytes;
  return b;
}

uint8_t* KvLayerBlocked::writable_block(const Table& t, int64_t b) {
  auto& tab = *t.blocks;
  if (static_cast<int64_t>(tab.size()) <= b) tab.resize(static_cast<size_t>(b + 1));
  auto& blk = tab[b];
  if (!blk) {
    blk = pool_->allocate(t.block_bytes);
    changed(tab, b);
  } else if (blk.use_count() > 1) {  // shared with the prompt cache: copy on write
    blk = pool_->clone(*blk);
    changed(tab, b);
  }
  *t.null_below = std::min(*t.null_below, b);
  return blk->data;
}

void KvLayerBlocked::write_rows(const Table& t, int64_t p0, int64_t n, const float* k_src, const float* v_src,
                                int64_t ld_token, int64_t ld_head) {
  if (n <= 0) return;
  const int64_t B = block_tokens(), nkv = spec_.geo.n_kv_heads;
  const int64_t k_rec = t.k->record_bytes(), v_rec = t.v->record_bytes();
  // Jobs: (block segment, head, K or V); the codec's own parallel loops run inline inside them.
  struct Segment {
    int64_t p, n;
    uint8_t* block;
  };
  std::vector<Segment> segs;
  for (int64_t p = p0; p < p0 + n;) {
    const int64_t e = std::min(p0 + n, (p / B + 1) * B);
    segs.push_back({p, e - p, writable_block(t, p / B)});
    p = e;
  }
  const int64_t n_jobs = static_cast<int64_t>(segs.size()) * nkv * 2;
  const int64_t rows_per_job = std::max<int64_t>(1, n / static_cast<int64_t>(segs.size()));
  const int64_t grain = std::max<int64_t>(1, std::min(t.k->encode_grain_rows(), t.v->encode_grain_rows()) / rows_per_job);
  ThreadPool::global().parallel_for(
      n_jobs,
      [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          const Segment& s = segs[j / (2 * nkv)];
          const int64_t h = (j / 2) % nkv, slot = s.p % B, i0 = s.p - p0;
          if (j % 2 == 0)
            t.k->encode(k_src + i0 * ld_token + h * ld_head, ld_token, s.n, s.block + (h * B + slot) * k_rec, k_rec);
          else
            t.v->encode(v_src + i0 * ld_token + h * ld_head, ld_token, s.n,
                        s.block + nkv * B * k_rec + (h * B + slot) * v_rec, v_rec);
        }
      },
      grain);
}

// Encodes the hot rows of positions [n_compressed_, p_end) into records.
void KvLayerBlocked::pack_hot(int64_t p_end) {
  const int64_t B = block_tokens(), d = spec_.geo.head_dim, nkv = spec_.geo.n_kv_heads;
  const Table rec = records();
  for (int64_t p = n_compressed_; p < p_end;) {
    const int64_t b = p / B, e = std::min(p_end, (b + 1) * B);
    const float* hb = reinterpret_cast<const float*>(hot_[b]->data);
    write_rows(rec, p, e - p, hb + (p - b * B) * d, hb + (nkv * B + p - b * B) * d, d, B * d);
    p = e;
  }
  n_compressed_ = std::max(n_compressed_, p_end);
}

// Frees record blocks at or past the record frontier, hot blocks holding no position of [n_compressed_, n_tokens_),
// and (sliding window) blocks entirely before what a query at next_query_pos can see, keeping one block of margin
// so the prompt cache can resume this sequence at its last block boundary.
void KvLayerBlocked::release_blocks(int64_t next_query_pos) {
  const int64_t B = block_tokens();
  const int64_t keep_from = spec_.window > 0 ? first_needed_position(next_query_pos) / B - 1 : 0;
  // Records: blocks before keep_from, and from the frontier on (b B >= n_compressed_).
  reset_blocks(blocks_, records_null_below_, keep_from);
  reset_blocks(blocks_, (n_compressed_ + B - 1) / B, static_cast<int64_t>(blocks_.size()));
  records_null_below_ = std::max(records_null_below_, keep_from);
  // Hot rows: blocks before keep_from or wholly packed ((b + 1) B <= n_compressed_), and from n_tokens_ on.
  const int64_t hot_from = std::max(keep_from, n_compressed_ / B);
  reset_blocks(hot_, hot_null_below_, hot_from);
  reset_blocks(hot_, (n_tokens_ + B - 1) / B, static_cast<int64_t>(hot_.size()));
  hot_null_below_ = std::max(hot_null_below_, hot_from);
  drop_trailing_nulls(blocks_);
  drop_trailing_nulls(hot_);
}

void KvLayerBlocked::reset_blocks(std::vector<std::shared_ptr<KvBlock>>& t, int64_t from, int64_t to) {
  to = std::min(to, static_cast<int64_t>(t.size()));
  for (int64_t b = std::max<int64_t>(from, 0); b < to; ++b) {
    if (!t[b]) continue;
    t[b].reset();
    changed(t, b);
  }
}

void KvLayerBlocked::append(const float* k, const float* v, int64_t n) {
  if (n <= 0) return;
  const int64_t total = n_tokens_ + n, first_query = n_tokens_;
  // Positions below target end up as records; the newest hot_window stay hot.
  const int64_t target = spec_.hot_window > 0 ? std::max(n_compressed_, total - spec_.hot_window) : total;
  try {
    append_rows(k, v, n, target);
  } catch (...) {
    release_blocks(n_tokens_);  // out of budget part way: return the blocks of the positions not appended
    throw;
  }
  n_tokens_ = total;
  n_compressed_ = target;
  release_blocks(first_query);  // the queries of this chunk are still to attend
}

// append() without its bookkeeping: positions [n_tokens_, n_tokens_ + n), records below target.
void KvLayerBlocked::append_rows(const float* k, const float* v, int64_t n, int64_t target) {
  const int64_t d = spec_.geo.head_dim, nkv = spec_.geo.n_kv_heads, row = nkv * d;
  pack_hot(std::min(target, n_tokens_));
  const KvRotation* rot = spec_.rotation.get();
  const int64_t chunk = rot ? kAppendChunk : n;  // without a rotation the rows are encoded straight from k, v
  std::vector<float> wk(rot ? static_cast<size_t>(std::min(n, chunk) * row) : 0), wv(wk.size());
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t nc = std::min(chunk, n - c0), pos0 = n_tokens_ + c0;
    const float* kc = k + c0 * row;
    const float* vc = v + c0 * row;
    if (rot) {
      ThreadPool::global().parallel_for(
          nc * nkv,
          [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
              rot->forward(kc + i * d, wk.data() + i * d);
              rot->forward(vc + i * d, wv.data() + i * d);
            }
          },
          16);
      kc = wk.data();
      vc = wv.data();
    }
    // The chunk's first n_rec rows (positions below target) become records, the rest hot rows.
    const int64_t n_rec = std::clamp<int64_t>(target - pos0, 0, nc);
    write_rows(records(), pos0, n_rec, kc, vc, row, d);
    write_rows(hot(), pos0 + n_rec, nc - n_rec, kc + n_rec * row, vc + n_rec * row, row, d);
  }
}

bool KvLayerBlocked::holds(int64_t pos) const {
  const auto& t = pos < n_compressed_ ? blocks_ : hot_;
  const int64_t b = pos / block_tokens();
  return b < static_cast<int64_t>(t.size()) && t[b];
}

bool KvLayerBlocked::can_truncate(int64_t n) const {
  if (n <= 0 || spec_.window == 0) return true;
  const int64_t B = block_tokens();
  for (int64_t p = first_needed_position(n) / B * B; p < n; p += B)
    if (!holds(std::max(p, first_needed_position(n)))) return false;
  return true;
}

void KvLayerBlocked::truncate(int64_t n) {
  n = std::max<int64_t>(0, n);
  if (n >= n_tokens_) return;
  // A window layer cannot recreate released positions: rewinding below them is a caller bug.
  if (!can_truncate(n)) throw Error(ErrorKind::internal, "kv cache", "truncate into released window blocks");
  n_tokens_ = n;
  n_compressed_ = std::min(n_compressed_, n);
  release_blocks(n);
}

void KvLayerBlocked::adopt(std::vector<std::shared_ptr<KvBlock>> blocks, int64_t n_tokens) {
  if (!shareable() || n_tokens_ != 0)
    throw Error(ErrorKind::internal, "kv cache", "adopt into a non-empty or unshareable layer");
  blocks_ = std::move(blocks);
  records_null_below_ = 0;
  first_changed_ = 0;
  n_tokens_ = n_compressed_ = n_tokens;
}

void KvLayerBlocked::extend(int64_t n) {
  if (n <= 0) return;
  if (spec_.hot_window > 0)
    throw Error(ErrorKind::internal, "kv cache", "extend() on a layer with a hot window (its rows live on the host)");
  const int64_t B = block_tokens(), first_query = n_tokens_, total = n_tokens_ + n;
  const Table rec = records();
  try {
    for (int64_t b = n_tokens_ / B; b * B < total; ++b) writable_block(rec, b);
  } catch (...) {
    release_blocks(n_tokens_);
    throw;
  }
  n_tokens_ = n_compressed_ = total;
  release_blocks(first_query);
}

void KvLayerBlocked::reconstruct(int64_t pos, float* k, float* v) const {
  const int64_t B = block_tokens(), d = spec_.geo.head_dim, nkv = spec_.geo.n_kv_heads, b = pos / B, slot = pos - b * B;
  const bool rec = pos < n_compressed_;
  const KvCodec& kc = rec ? *spec_.k_codec : hot_codec_;
  const KvCodec& vc = rec ? *spec_.v_codec : hot_codec_;
  const uint8_t* blk = (rec ? blocks_ : hot_)[b]->data;
  for (int64_t h = 0; h < nkv; ++h) {
    kc.dequantize(blk + (h * B + slot) * kc.record_bytes(), k + h * d);
    vc.dequantize(blk + nkv * B * kc.record_bytes() + (h * B + slot) * vc.record_bytes(), v + h * d);
    if (spec_.rotation) {
      spec_.rotation->inverse(k + h * d, k + h * d);
      spec_.rotation->inverse(v + h * d, v + h * d);
    }
  }
}

BlockedKvView KvLayerBlocked::view(std::vector<const uint8_t*> (&ptrs)[2]) const {
  auto pointers = [](const std::vector<std::shared_ptr<KvBlock>>& t, std::vector<const uint8_t*>& p) {
    p.resize(t.size());
    for (size_t i = 0; i < t.size(); ++i) p[i] = t[i] ? t[i]->data : nullptr;
    return p.data();
  };
  BlockedKvView v;
  v.rotation = spec_.rotation.get();
  v.n_kv_heads = spec_.geo.n_kv_heads;
  v.head_dim = spec_.geo.head_dim;
  v.block_tokens = block_tokens();
  v.n_tokens = n_tokens_;
  v.n_compressed = n_compressed_;
  v.cold = {spec_.k_codec.get(), spec_.v_codec.get(), pointers(blocks_, ptrs[0])};
  v.hot = {&hot_codec_, &hot_codec_, pointers(hot_, ptrs[1])};
  return v;
}

void KvLayerBlocked::attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const {
  thread_local std::vector<const uint8_t*> ptrs[2];
  blocked_attend(view(ptrs), spec_.geo.n_heads, q, n_q, q_pos0, spec, out);
}

void KvLayerBlocked::attend_reference(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec,
                                      float* out) const {
  std::vector<const uint8_t*> ptrs[2];
  blocked_attend_ref(view(ptrs), spec_.geo.n_heads, q, n_q, q_pos0, spec, out);
}

}  // namespace lmlab
