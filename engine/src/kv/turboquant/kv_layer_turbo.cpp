// TurboQuant KV layer cache (see kv_layer_turbo.h).
#include "kv/turboquant/kv_layer_turbo.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kv/turboquant/rng.h"
#include "kv/blocked_attention.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "util/thread_pool.h"

namespace lmlab {

using turboquant::TqCodec;
using turboquant::TqFormat;

namespace {

constexpr int64_t kAppendChunk = 256;  // tokens rotated per step of append (bounds its scratch)

const KvGeometry& checked(const KvGeometry& g) {
  if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.head_dim <= 0 || g.n_heads % g.n_kv_heads != 0)
    throw Error(ErrorKind::invalid_input, std::string(option_flag("kv_mode")),
                "bad KV geometry: " + std::to_string(g.n_heads) + " heads, " + std::to_string(g.n_kv_heads) +
                    " KV heads, head_dim " + std::to_string(g.head_dim));
  return g;
}

TqFormat k_format(const KvGeometry& g, const TurboKvOptions& o) {
  switch (o.mode) {
    case TurboKvOptions::Mode::affine4: return turboquant::make_affine_format(g.head_dim, 4);
    case TurboKvOptions::Mode::affine8: return turboquant::make_affine_format(g.head_dim, 8);
    case TurboKvOptions::Mode::f16: return turboquant::make_f16_format(g.head_dim);
    case TurboKvOptions::Mode::turbo: break;
  }
  return turboquant::make_lloyd_max_format(g.head_dim, o.k_bits, o.k_qjl);
}

TqFormat v_format(const KvGeometry& g, const TurboKvOptions& o) {
  switch (o.mode) {
    case TurboKvOptions::Mode::affine4: return turboquant::make_affine_format(g.head_dim, 4);
    case TurboKvOptions::Mode::affine8: return turboquant::make_affine_format(g.head_dim, 8);
    case TurboKvOptions::Mode::f16: return turboquant::make_f16_format(g.head_dim);
    case TurboKvOptions::Mode::turbo: break;
  }
  return turboquant::make_lloyd_max_format(g.head_dim, o.v_bits, false);
}

template <typename T>
T* alloc_block(uint64_t bytes) {
  const uint64_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p)
    throw Error(ErrorKind::out_of_memory, "TurboQuant KV cache",
                "cannot allocate a block of " + std::to_string(bytes) + " bytes");
  return static_cast<T*>(p);
}

}  // namespace

KvLayerTurbo::KvLayerTurbo(const KvGeometry& geometry, const TurboKvOptions& options)
    : geo_(checked(geometry)),
      opt_(options),
      k_codec_(k_format(geometry, options), turboquant::derive_seed(options.seed, 1)),
      v_codec_(v_format(geometry, options), turboquant::derive_seed(options.seed, 2)) {
  if (options.hot_window < 0)
    throw Error(ErrorKind::invalid_input, "--turbo-kv hot window",
                "must be >= 0, got " + std::to_string(options.hot_window));
  if (options.mode == TurboKvOptions::Mode::turbo)
    rotation_ = std::make_unique<turboquant::HeadRotation>(geometry.head_dim, turboquant::derive_seed(options.seed, 0));
}

KvLayerTurbo::~KvLayerTurbo() {
  for (auto* p : packed_) std::free(p);
  for (auto* p : hot_) std::free(p);
}

uint64_t KvLayerTurbo::packed_bytes_per_token() const {
  return static_cast<uint64_t>(geo_.n_kv_heads * (k_codec_.format().record_bytes() + v_codec_.format().record_bytes()));
}

uint64_t KvLayerTurbo::hot_bytes_per_token() const {
  return static_cast<uint64_t>(geo_.n_kv_heads * geo_.head_dim * 2) * sizeof(float);
}

uint64_t KvLayerTurbo::bytes() const {
  return static_cast<uint64_t>(n_packed_blocks_ * kBlockTokens) * packed_bytes_per_token() +
         static_cast<uint64_t>(n_hot_blocks_ * kBlockTokens) * hot_bytes_per_token();
}

uint8_t* KvLayerTurbo::packed_block(int64_t b) {
  if (static_cast<int64_t>(packed_.size()) <= b) packed_.resize(static_cast<size_t>(b + 1), nullptr);
  if (!packed_[b]) {
    packed_[b] = alloc_block<uint8_t>(kBlockTokens * packed_bytes_per_token());
    ++n_packed_blocks_;
  }
  return packed_[b];
}

float* KvLayerTurbo::hot_block(int64_t b) {
  if (static_cast<int64_t>(hot_.size()) <= b) hot_.resize(static_cast<size_t>(b + 1), nullptr);
  if (!hot_[b]) {
    hot_[b] = alloc_block<float>(kBlockTokens * hot_bytes_per_token());
    ++n_hot_blocks_;
  }
  return hot_[b];
}

// Frees packed blocks at or past the packed frontier and hot blocks holding no position of
// [n_compressed_, n_tokens_).
void KvLayerTurbo::release_blocks() {
  const int64_t B = kBlockTokens;
  for (int64_t b = 0; b < static_cast<int64_t>(packed_.size()); ++b)
    if (packed_[b] && b * B >= n_compressed_) {
      std::free(packed_[b]);
      packed_[b] = nullptr;
      --n_packed_blocks_;
    }
  for (int64_t b = 0; b < static_cast<int64_t>(hot_.size()); ++b)
    if (hot_[b] && ((b + 1) * B <= n_compressed_ || b * B >= n_tokens_)) {
      std::free(hot_[b]);
      hot_[b] = nullptr;
      --n_hot_blocks_;
    }
}

void KvLayerTurbo::pack_rows(int64_t p0, int64_t n, const float* k_src, const float* v_src, int64_t ld_token,
                             int64_t ld_head) {
  if (n <= 0) return;
  const int64_t B = kBlockTokens, nkv = geo_.n_kv_heads;
  const int64_t k_rec = k_codec_.format().record_bytes(), v_rec = v_codec_.format().record_bytes();
  // Jobs: (block segment, head, K or V); the codec's own parallel loops run inline inside them.
  struct Segment {
    int64_t p, n;
    uint8_t* block;
  };
  std::vector<Segment> segs;
  for (int64_t p = p0; p < p0 + n;) {
    const int64_t e = std::min(p0 + n, (p / B + 1) * B);
    segs.push_back({p, e - p, packed_block(p / B)});
    p = e;
  }
  const int64_t n_jobs = static_cast<int64_t>(segs.size()) * nkv * 2;
  ThreadPool::global().parallel_for(n_jobs, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const Segment& s = segs[j / (2 * nkv)];
      const int64_t h = (j / 2) % nkv, slot = s.p % B, i0 = s.p - p0;
      if (j % 2 == 0)
        k_codec_.encode(k_src + i0 * ld_token + h * ld_head, ld_token, s.n, s.block + (h * B + slot) * k_rec, k_rec);
      else
        v_codec_.encode(v_src + i0 * ld_token + h * ld_head, ld_token, s.n,
                        s.block + nkv * B * k_rec + (h * B + slot) * v_rec, v_rec);
    }
  });
}

void KvLayerTurbo::pack_hot(int64_t p_end) {
  const int64_t B = kBlockTokens, d = geo_.head_dim, nkv = geo_.n_kv_heads;
  for (int64_t p = n_compressed_; p < p_end;) {
    const int64_t b = p / B, e = std::min(p_end, (b + 1) * B);
    const float* hb = hot_[b];
    pack_rows(p, e - p, hb + (p - b * B) * d, hb + (nkv * B + p - b * B) * d, d, B * d);
    p = e;
  }
  n_compressed_ = std::max(n_compressed_, p_end);
}

void KvLayerTurbo::append(const float* k, const float* v, int64_t n) {
  if (n <= 0) return;
  const int64_t B = kBlockTokens, d = geo_.head_dim, nkv = geo_.n_kv_heads, row = nkv * d;
  const int64_t total = n_tokens_ + n;
  const int64_t target = std::max(n_compressed_, total - opt_.hot_window);  // positions below end up packed
  pack_hot(std::min(target, n_tokens_));
  std::vector<float> wk(static_cast<size_t>(std::min(n, kAppendChunk) * row)), wv(wk.size());
  for (int64_t c0 = 0; c0 < n; c0 += kAppendChunk) {
    const int64_t nc = std::min(kAppendChunk, n - c0), pos0 = n_tokens_ + c0;
    const float* kc = k + c0 * row;
    const float* vc = v + c0 * row;
    if (rotation_) {
      ThreadPool::global().parallel_for(
          nc * nkv,
          [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
              rotation_->forward(kc + i * d, wk.data() + i * d);
              rotation_->forward(vc + i * d, wv.data() + i * d);
            }
          },
          16);
    } else {
      std::memcpy(wk.data(), kc, static_cast<size_t>(nc * row) * sizeof(float));
      std::memcpy(wv.data(), vc, static_cast<size_t>(nc * row) * sizeof(float));
    }
    // The chunk's first n_pack rows (positions below target) are packed, the rest go to hot blocks.
    const int64_t n_pack = std::clamp<int64_t>(target - pos0, 0, nc);
    pack_rows(pos0, n_pack, wk.data(), wv.data(), row, d);
    for (int64_t i = n_pack; i < nc; ++i) {
      const int64_t p = pos0 + i, b = p / B, slot = p - b * B;
      float* hb = hot_block(b);
      for (int64_t h = 0; h < nkv; ++h) {
        std::memcpy(hb + (h * B + slot) * d, wk.data() + (i * nkv + h) * d, static_cast<size_t>(d) * sizeof(float));
        std::memcpy(hb + (nkv * B + h * B + slot) * d, wv.data() + (i * nkv + h) * d,
                    static_cast<size_t>(d) * sizeof(float));
      }
    }
  }
  n_tokens_ = total;
  n_compressed_ = target;
  release_blocks();
}

void KvLayerTurbo::truncate(int64_t n) {
  n = std::max<int64_t>(0, n);
  if (n >= n_tokens_) return;
  n_tokens_ = n;
  n_compressed_ = std::min(n_compressed_, n);
  release_blocks();
}

void KvLayerTurbo::reconstruct(int64_t pos, float* k, float* v) const {
  const int64_t B = kBlockTokens, d = geo_.head_dim, nkv = geo_.n_kv_heads, b = pos / B, slot = pos - b * B;
  const int64_t k_rec = k_codec_.format().record_bytes(), v_rec = v_codec_.format().record_bytes();
  for (int64_t h = 0; h < nkv; ++h) {
    float* kh = k + h * d;
    float* vh = v + h * d;
    if (pos < n_compressed_) {
      k_codec_.dequantize(packed_[b] + (h * B + slot) * k_rec, kh);
      v_codec_.dequantize(packed_[b] + nkv * B * k_rec + (h * B + slot) * v_rec, vh);
    } else {
      std::memcpy(kh, hot_[b] + (h * B + slot) * d, static_cast<size_t>(d) * sizeof(float));
      std::memcpy(vh, hot_[b] + (nkv * B + h * B + slot) * d, static_cast<size_t>(d) * sizeof(float));
    }
    if (rotation_) {
      rotation_->inverse(kh, kh);
      rotation_->inverse(vh, vh);
    }
  }
}

void KvLayerTurbo::attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const {
  BlockedKvView view;
  view.k_codec = &k_codec_;
  view.v_codec = &v_codec_;
  view.rotation = rotation_.get();
  view.n_kv_heads = geo_.n_kv_heads;
  view.head_dim = geo_.head_dim;
  view.block_tokens = kBlockTokens;
  view.n_tokens = n_tokens_;
  view.n_compressed = n_compressed_;
  view.blocks = packed_.data();
  // Hot blocks hold [K: n_kv x B rows][V: n_kv x B rows] (head-major).
  const int64_t B = kBlockTokens, d = geo_.head_dim;
  std::vector<const float*> hot_v(hot_.size(), nullptr);
  for (size_t b = 0; b < hot_.size(); ++b)
    if (hot_[b]) hot_v[b] = hot_[b] + geo_.n_kv_heads * B * d;
  view.hot_k = hot_.data();
  view.hot_v = hot_v.data();
  view.hot_ld_token = d;
  view.hot_ld_head = B * d;
  blocked_attend(view, geo_.n_heads, q, n_q, q_pos0, spec, out);
}

uint64_t turbo_kv_packed_bytes_per_token(const KvGeometry& geometry, const TurboKvOptions& options) {
  checked(geometry);
  return static_cast<uint64_t>(
      geometry.n_kv_heads * (k_format(geometry, options).record_bytes() + v_format(geometry, options).record_bytes()));
}

std::unique_ptr<KvLayerCache> make_turbo_kv_layer(const KvGeometry& geometry, const TurboKvOptions& options) {
  return std::make_unique<KvLayerTurbo>(geometry, options);
}

}  // namespace lmlab
