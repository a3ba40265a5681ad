// `lmlab synth`: a random-weight Hugging Face model directory with the exact tensor shapes of a real model,
// for benchmarks at sizes that cannot be downloaded here. Weights ~ N(0, 0.02) (a trained init's scale;
// an Irwin-Hall approximation, seeded and independent of the thread count), norms 1 (gemma3 stores 0, its
// norms scale by 1 + w). bits 16 writes bf16; 4 or 8 writes the MLX affine layout directly (stacked
// mlp.switch_mlp experts for qwen3_moe, 8-bit routers, quantized embedding and lm_head, as convert would).
// Output: config.json (the architecture's model_type keys), model*.safetensors shards +
// model.safetensors.index.json, tokenizer files copied from `tokenizer_from`, generation_config.json.
// Streams: each tensor is generated in blocks of rows; nothing model-sized is held in memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/convert.h"

namespace lmlab {

struct SynthShape {
  std::string arch;  // llama | qwen3 | qwen3_moe | mixtral | gemma3
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  int64_t experts = 0, top_k = 0, moe_intermediate = 0;  // MoE (qwen3_moe, mixtral)
  int64_t vocab = 0;
  bool tied_embeddings = false;
  double rope_theta = 10000.0;
  double rope_linear_factor = 1.0;       // > 1: linear RoPE scaling (gemma3: of the global layers only)
  int64_t max_positions = 4096;
  double norm_eps = 1e-6;
  int64_t sliding_window = 0;            // gemma3: window of the local layers
  int64_t sliding_window_pattern = 6;    // gemma3: every n-th layer is global
  double query_pre_attn_scalar = 0.0;    // gemma3 (0: head_dim)

  uint64_t parameter_count() const;
  uint64_t active_parameter_count() const;  // per token (top_k experts instead of all)
};

// Presets: real shapes (see synth.cpp for the sources and the assumptions of the "-like" ones).
std::vector<std::string> synth_preset_names();
SynthShape synth_preset(std::string_view name);       // throws invalid_input listing the presets
SynthShape synth_default_shape(std::string_view arch);  // a tiny model of the architecture
// Scales hidden, intermediate sizes and layers by `factor` (keeping head_dim, the grouped-query ratio, the
// expert count, top-k and the architecture): KV heads scale by `factor`, query heads follow at the same ratio,
// and a model whose hidden size is heads * head_dim keeps that; sizes stay multiples of 128 (any group size
// divides them).
SynthShape scale_shape(const SynthShape& shape, double factor);

struct SynthOptions {
  SynthShape shape;
  int bits = 16;        // 16 (bf16), 8 or 4 (MLX affine)
  int group_size = 64;  // for bits 4 / 8
  uint64_t seed = 0;
  // Standard deviation of the token embeddings (every other matrix: 0.02, the HF init). At 0.02 a random network's
  // positions grow alike layer after layer and a MoE routes most tokens of a layer to the same experts; at ~1 the
  // token keeps its weight in the residual stream and the routing varies with it, as a trained router's does
  // (docs/measurements.md: what a streamed decode reads depends on it).
  float embed_std = 0.02f;
  uint64_t shard_bytes = uint64_t{5000} << 20;  // tensor bytes per shard (a larger tensor gets its own)
  std::filesystem::path tokenizer_from;         // a model directory holding tokenizer.json (required)
  bool vocab_from_tokenizer = true;  // replace shape.vocab by the tokenizer's vocabulary size when they differ
  WriteProgressFn progress;
};

struct SynthResult {
  SynthShape shape;  // as written (vocab possibly replaced)
  uint64_t bytes_written = 0, parameters = 0;
  uint64_t active_parameters = 0;  // per token: top_k of the experts
  int shards = 0;
};

// Throws lmlab::Error naming the option (--hidden, ...) or file at fault.
SynthResult synth_model(const std::filesystem::path& out_dir, const SynthOptions& options);

}  // namespace lmlab
