// Transformer: the decoder forward shared by every architecture, parameterised by a ModelSpec: the CPU forward,
// and the reference every other backend (backend/, cuda/) is tested against. Processes a chunk of tokens at once
// (prefill) or one (decode), appending their K/V to a KvCache.
#pragma once

#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "lmlab/safetensors.h"
#include "kv/kv_sequence.h"
#include "forward/sequence_step.h"
#include "weights/linear.h"
#include "config/model_spec.h"
#include "experts/expert_streamer.h"

namespace lmlab {

// The attention of layer `ls` (softmax scale, soft-cap, sliding window): one definition for every backend.
inline AttentionSpec attention_spec(const ModelSpec& s, const LayerSpec& ls) {
  return {s.attn_scale > 0 ? s.attn_scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim)), s.attn_softcap,
          ls.window};
}

// Where a sequence's rows lie in a batch's activations: rows [row0, row0 + n) of x, positions [pos0, pos0 + n).
struct BatchRows {
  KvSequence* cache;
  int64_t row0, n, pos0;
};

struct MlpWeights {
  std::unique_ptr<Linear> gate, up, down;  // [inter, hidden], [inter, hidden], [hidden, inter]
};

struct MoeWeights {
  std::unique_ptr<Linear> router;  // [n_experts, hidden]
  std::vector<MlpWeights> experts;
};

struct LayerWeights {
  std::vector<float> attn_norm, post_attn_norm, ffn_norm, post_ffn_norm;  // [hidden], offset folded in
  std::vector<float> q_norm, k_norm;                                      // [head_dim]
  std::unique_ptr<Linear> q, k, v, o;
  MlpWeights mlp;
  MoeWeights moe;
};

// Runtime choices that change how weights are held, not what the model computes.
struct TransformerOptions {
  bool stream_experts = false;  // MoE experts read from SSD on demand (ExpertStreamer)
  ExpertStreamerOptions experts;
};

class Transformer {
 public:
  Transformer(ModelSpec spec, WeightStore store, const TransformerOptions& options = {});
  ~Transformer();

  const ModelSpec& spec() const { return spec_; }
  const WeightStore& store() const { return store_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  const ExpertStreamer* streamer() const { return streamer_.get(); }  // null unless streaming experts
  // The same streamer for a device backend's requests (it is thread-safe; the CPU layers share it).
  ExpertStreamer* shared_streamer() const { return streamer_.get(); }

  // Runs tokens at positions [pos0, pos0 + n) with the cache holding positions [0, pos0).
  // logits: [n, vocab] when all_logits, else [1, vocab] for the last token.
  void forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
               std::vector<float>& logits) const;

  // Several sequences in one step: their rows stacked, so every weight matrix is read once for all of them;
  // attention runs per sequence over its own cache. logits: [steps, vocab], each sequence's last token.
  // Each row equals forward()'s up to kernel rounding (a matmul over more rows may take another tile path).
  void forward_batch(std::span<const SequenceStep> steps, std::vector<float>& logits) const;

  // forward's three stages, for backends that run some layers elsewhere (--gpu-layers):
  // x [n, hidden] = the scaled embeddings of tokens; layers [l0, l1) on x in place; logits from x's last rows.
  void embed(std::span<const int32_t> tokens, float* x) const;
  void run_layers(float* x, int64_t n, int64_t pos0, KvSequence& cache, int64_t l0, int64_t l1) const;
  void run_layers(float* x, std::span<const BatchRows> rows, int64_t l0, int64_t l1) const;  // x [sum of n, hidden]
  void head(const float* x, int64_t n, bool all_logits, std::vector<float>& logits) const;

  // The host weights (views of the mapped files), which device backends upload in their stored format.
  const std::vector<LayerWeights>& layer_weights() const { return layers_; }
  const Linear& embed_weight() const { return *embed_; }
  const Linear& lm_head_weight() const { return lm_head_ ? *lm_head_ : *embed_; }
  const std::vector<float>& final_norm() const { return final_norm_; }

 private:
  void load_weights();
  // logits [n, vocab] of x's n rows; one_per_sequence: each row is a different sequence's last token.
  void project_out(const float* x, int64_t n, bool one_per_sequence, std::vector<float>& logits) const;
  MlpWeights load_mlp(const std::string& gate, const std::string& up, const std::string& down, int64_t inter,
                      int64_t expert = -1) const;
  void attention_block(const LayerWeights& w, const LayerSpec& ls, int64_t layer, const float* h,
                       std::span<const BatchRows> rows, float* out) const;
  // `decode`: how many leading rows of h are decode tokens of separate sequences (linear_rows in the .cpp).
  void mlp_block(const Linear& gate, const Linear& up, const Linear& down, const float* h, int64_t n,
                 int64_t decode, float* out) const;
  void moe_block(int64_t layer, const MoeWeights& w, const float* h, int64_t n, int64_t decode, float* out) const;

  ModelSpec spec_;
  WeightStore store_;
  std::unique_ptr<Linear> embed_, lm_head_;  // lm_head_ null when tied to embed_
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
  uint64_t weight_bytes_ = 0;
  std::unique_ptr<ExpertStreamer> streamer_;
};

}  // namespace lmlab
