// KvLayerTurbo: a KvLayerCache that stores keys and values TurboQuant-compressed (arXiv 2504.19874) and
// attends on the packed form directly (kv/blocked_attention.h).
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
//     head_dim 128: K record 82 bytes at 5 bits (5.125 bits/dim), V record 66 bytes at 4 bits (4.125 bits/dim);
//     3 bits + QJL K 68 bytes (4.25 bits/dim), 3-bit V 50 bytes (3.125 bits/dim).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kv/kv_layer.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/wht.h"

namespace lmlab {

// Defaults: 5-bit K and 4-bit V (TurboQuant_mse, Algorithm 1, with the norm rescale of tq_codec.h), every token
// compressed: 5.125 + 4.125 bits/dim at head_dim 128 (296 bytes per token and layer with 2 KV heads, 0.289x
// fp16). The score error through K hurts far more than V's error (coder-dense, V exact: 4-bit K alone costs
// +0.81% perplexity, 4-bit V alone +0.30%), so the spare bit goes to K. Measured figures for every format are in
// docs/turboquant.md (tests/turboquant_quality_test.cpp): the default is the smallest within +1% perplexity and
// 97% greedy agreement on both coder models; K4 V4 misses (96.1%), the paper's / SwiftLM's 4.25 + 3.125
// bits/dim (k_bits 3 + k_qjl, v_bits 3) is +6-7% / 90%. QJL makes the score estimator unbiased, but its
// variance (pi/2 times the dropped residual's, Lemma 4) costs more through softmax than the rescaled MSE
// quantizer's error, and its bit is worth less than another codebook bit.
struct TurboKvOptions {
  enum class Mode { turbo, affine4, affine8, f16 };
  Mode mode = Mode::turbo;   // turbo: TurboQuant; affine4 / affine8: per-token-per-head int4 / int8 baseline;
                             // f16: plain fp16 rows (the uncompressed baseline on the same kernels)
  int k_bits = 5;            // turbo: Lloyd-Max bits of K (2..5), plus 1 QJL bit when k_qjl
  bool k_qjl = false;        // K = TurboQuant_prod (Algorithm 2): k_bits MSE bits + 1-bit QJL of the residual
  int v_bits = 4;            // turbo: Lloyd-Max bits of V (2..5)
  int64_t hot_window = 0;    // most recent positions kept in f32; 0 = compress everything
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
  uint64_t packed_bytes_per_token() const;                // n_kv_heads * (K record + V record)
  uint64_t hot_bytes_per_token() const;                   // n_kv_heads * head_dim * 2 * 4
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

  KvGeometry geo_;
  TurboKvOptions opt_;
  std::unique_ptr<turboquant::HeadRotation> rotation_;  // null for the affine modes
  turboquant::TqCodec k_codec_, v_codec_;
  std::vector<uint8_t*> packed_;  // [block] or null
  std::vector<float*> hot_;       // [block] or null
  int64_t n_packed_blocks_ = 0, n_hot_blocks_ = 0;
  int64_t n_tokens_ = 0, n_compressed_ = 0;
};

// Bytes per position of the packed part of a layer (what bytes() grows by per token, in whole blocks).
uint64_t turbo_kv_packed_bytes_per_token(const KvGeometry& geometry, const TurboKvOptions& options);

std::unique_ptr<KvLayerCache> make_turbo_kv_layer(const KvGeometry& geometry, const TurboKvOptions& options);

}  // namespace lmlab
