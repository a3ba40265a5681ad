// The KV layer specs of the compressed modes: TurboQuant (arXiv 2504.19874) and the lab's affine / f16
// baselines, stored by the one blocked layer (kv/kv_layer_blocked.h) and attended on their packed form
// (kv/attention/blocked_attention.h).
//   - Working domain (TurboQuant): every K/V head vector is rotated once on append by a seeded randomized
//     Walsh-Hadamard rotation per group of <= 128 dims (wht.h); queries are rotated instead of keys and the output
//     rotated back once per head. The affine and f16 modes skip the rotation.
//   - Hot window: the most recent hot_window positions stay exact (f32, rotated); older positions are encoded
//     into records (tq_codec.h): K = k_bits Lloyd-Max codes + (k_qjl) 1-bit QJL signs of the residual,
//     V = v_bits Lloyd-Max codes, each with fp16 scalars. hot_window = 0 compresses every token at append.
//   - Memory: blocks of the pool's block_tokens positions (KvBlockPool, so --kv-budget-mb bounds them):
//       record block = n_kv_heads * block_tokens * (K record + V record) bytes
//       hot block    = n_kv_heads * block_tokens * head_dim * 2 * 4 bytes
//     head_dim 128: K record 82 bytes at 5 bits (5.125 bits/dim), V record 66 bytes at 4 bits (4.125 bits/dim);
//     3 bits + QJL K 68 bytes (4.25 bits/dim), 3-bit V 50 bytes (3.125 bits/dim).
#pragma once

#include <cstdint>

#include "kv/kv_layer_spec.h"

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

// Throws lmlab::Error (invalid_input / unsupported) naming the option at fault.
KvLayerSpec turbo_kv_layer_spec(const KvGeometry& geometry, const TurboKvOptions& options);

// Bytes per position of the record part of a layer (what bytes() grows by per token, in whole blocks).
uint64_t turbo_kv_packed_bytes_per_token(const KvGeometry& geometry, const TurboKvOptions& options);

}  // namespace lmlab
