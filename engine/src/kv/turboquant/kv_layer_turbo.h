// KvLayerTurbo: a KvLayerCache that stores keys and values TurboQuant-compressed (arXiv 2504.19874) and
// attends on the packed form directly (tq_attention.h).
//   - Working domain: every K/V head vector is rotated once on append by a seeded randomized Walsh-Hadamard
//     rotation per group of <= 128 dims (wht.h); queries are rotated instead of keys and the output rotated
//     back once per head. The affine baseline modes skip the rotation.
//   - Hot window: the most recent hot_window positions stay exact (f32, rotated); older positions are encoded
//     into records (tq_codec.h): K = k_bits Lloyd-Max codes + (k_qjl) 1-bit QJL signs of the residual,
//     V = v_bits Lloyd-Max codes, each with fp16 scalars. hot_window = 0 compresses every token at append.
//     After truncate() below the compressed frontier, the window refills with the new tokens only.
//   - Memory: positions live in blocks of kBlockTokens, allocated when first written and freed when no longer
//     needed, so bytes() is exactly the allocated blocks and grows with the context:
//       packed block = n_kv_heads * kBlockTokens * (K record + V record) bytes
//       hot block    = n_kv_heads * kBlockTokens * head_dim * 2 * 4 bytes
//     K record (head_dim 128, 3 bits + QJL) 68 bytes, V record (3 bits) 50 bytes: 4.25 + 3.125 bits/dim.
//   - Centering: keys and values of one head share a common component (a bias in k_proj / v_proj, RoPE's slow
//     dimensions) that carries no information for softmax but, being part of every vector's norm, scales every
//     vector's quantization error. The mean of each KV head's K and V over the first appended chunk is fixed
//     as that head's center; records hold x - center and the decode adds it back, so scores and outputs are
//     unchanged in exact arithmetic and only the error shrinks. 2 * n_kv_heads * head_dim floats per layer.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kv/kv_layer.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/wht.h"

namespace lmlab {

struct TurboKvOptions {
  enum class Mode { turbo, affine4, affine8 };
  Mode mode = Mode::turbo;  // turbo: TurboQuant; affine4 / affine8: per-token-per-head int4 / int8 baseline
  int k_bits = 3;           // turbo: Lloyd-Max bits of K (2, 3, 4), plus 1 QJL bit when k_qjl
  bool k_qjl = true;
  int v_bits = 3;           // turbo: Lloyd-Max bits of V (2, 3, 4)
  int64_t hot_window = 256; // most recent positions kept in f32; 0 = compress everything
  bool center = true;       // encode K and V minus a per-head mean fixed at the first append (see above)
  uint64_t seed = 0x51ed270b27a9c3f1ull;  // rotation signs and QJL matrix (same seed = same cache contents)
};

class KvLayerTurbo final : public KvLayerCache {
 public:
  static constexpr int64_t kBlockTokens = 64;

  // Throws lmlab::Error (invalid_input / unsupported) naming the option at fault.
  KvLayerTurbo(const KvGeometry& geometry, const TurboKvOptions& options);
  ~KvLayerTurbo() override;
  KvLayerTurbo(const KvLayerTurbo&) = delete;
  KvLayerTurbo& operator=(const KvLayerTurbo&) = delete;

  void append(const float* k, const float* v, int64_t n) override;
  void attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const override;
  int64_t n_tokens() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  uint64_t bytes() const override;

  int64_t n_compressed() const { return n_compressed_; }  // positions [0, n_compressed) are packed
  uint64_t packed_bytes_per_token() const;               // n_kv_heads * (K record + V record)
  uint64_t hot_bytes_per_token() const;                  // n_kv_heads * head_dim * 2 * 4
  // What attention sees at position pos < n_tokens(), back in the input domain: k, v [n_kv_heads, head_dim]
  // (packed: the codec's dequantize, QJL term included; hot: the exact rows). For tests and diagnostics.
  void reconstruct(int64_t pos, float* k, float* v) const;
  const turboquant::TqCodec& k_codec() const { return k_codec_; }
  const turboquant::TqCodec& v_codec() const { return v_codec_; }

 private:
  uint8_t* packed_block(int64_t b);
  float* hot_block(int64_t b);
  // Encodes positions [p0, p0 + n) into their packed blocks; the working-domain row of position p0 + i and KV
  // head h is at k_src / v_src + i * ld_token + h * ld_head.
  void pack_rows(int64_t p0, int64_t n, const float* k_src, const float* v_src, int64_t ld_token, int64_t ld_head);
  void pack_hot(int64_t p_end);
  void release_blocks();
  // The center of K (kv = 0) or V (kv = 1) of KV head h, or null when centering is off or not yet set.
  const float* center(int kv, int64_t h) const {
    return center_.empty() ? nullptr : center_.data() + (kv * geo_.n_kv_heads + h) * geo_.head_dim;
  }

  KvGeometry geo_;
  TurboKvOptions opt_;
  std::unique_ptr<turboquant::HeadRotation> rotation_;  // null for the affine modes
  turboquant::TqCodec k_codec_, v_codec_;
  std::vector<float> center_;     // [2][n_kv_heads][head_dim] K then V centers (working domain); empty until set
  std::vector<uint8_t*> packed_;  // [block] or null
  std::vector<float*> hot_;       // [block] or null
  int64_t n_packed_blocks_ = 0, n_hot_blocks_ = 0;
  int64_t n_tokens_ = 0, n_compressed_ = 0;
};

// Bytes per position of the packed part of a layer (what bytes() grows by per token, in whole blocks).
uint64_t turbo_kv_packed_bytes_per_token(const KvGeometry& geometry, const TurboKvOptions& options);

std::unique_ptr<KvLayerCache> make_turbo_kv_layer(const KvGeometry& geometry, const TurboKvOptions& options);

}  // namespace lmlab
