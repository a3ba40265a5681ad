// ModelSpec: everything the shared transformer needs to know about an architecture, filled in by one
// file per HF model_type (engine/src/arch/<model_type>.cpp). Deviations from the llama baseline are named
// fields (gemma's (1 + w) norms, embedding scale, sandwich norms, soft-capping), not copies of the forward.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kv/kv_layer.h"
#include "model/linear.h"

namespace lmlab {

enum class Activation { silu, gelu_tanh };

struct RopeSpec {
  std::string type = "default";  // default | linear | llama3
  double theta = 10000.0;
  int64_t rot_dim = 0;           // rotated dims per head (head_dim * partial_rotary_factor)
  float attention_scaling = 1.0f;
  std::vector<float> inv_freq;   // [rot_dim / 2]
};

struct LayerSpec {
  int64_t window = 0;  // 0 = full attention, else sliding window (in tokens)
  int rope = 0;        // index into ModelSpec::ropes
  bool moe = false;
};

// Tensor names below "model.layers.{L}." (an empty name: the layer has no such tensor).
struct WeightNames {
  std::string attn_norm = "input_layernorm";
  std::string post_attn_norm;                    // gemma3's sandwich norm on the attention output
  std::string ffn_norm = "post_attention_layernorm";
  std::string post_ffn_norm;                     // gemma3's sandwich norm on the MLP output
  std::string q_norm, k_norm;                    // per-head RMSNorm of q and k (qwen3, gemma3)
  std::string mlp = "mlp";
  std::string router = "mlp.gate";
  std::string experts = "mlp.experts";           // per-expert: "<experts>.<E>.<gate>"
  std::string stacked_experts = "mlp.switch_mlp";  // MLX: one [n_experts, out, in] tensor per projection
  std::string gate = "gate_proj", up = "up_proj", down = "down_proj";  // per-expert (and dense MLP) names
  // MLX stacks experts under these names whatever the architecture (mixtral too: switch_mlp.gate_proj).
  std::string stacked_gate = "gate_proj", stacked_up = "up_proj", stacked_down = "down_proj";
};

// The tensor prefixes (without ".weight") of one expert's projections in a layer ("model.layers.L.").
struct ExpertTensorNames {
  std::string gate, up, down;
  bool stacked;  // one [n_experts, out, in] tensor per projection: slice `expert`
};
ExpertTensorNames expert_tensor_names(const WeightNames& n, const WeightStore& store, const std::string& layer_prefix,
                                      int64_t expert);

struct ModelSpec {
  std::string arch;  // canonical model_type
  int64_t vocab = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t intermediate = 0, max_positions = 0;
  float norm_eps = 1e-6f;
  float norm_weight_offset = 0.0f;  // 1 for gemma: y = norm(x) * (1 + w)
  float embed_scale = 1.0f;         // gemma: sqrt(hidden) rounded to the weights' dtype
  float attn_scale = 0.0f;          // softmax scale; 0 means head_dim^-0.5
  float attn_softcap = 0.0f, final_softcap = 0.0f;
  Activation activation = Activation::silu;
  bool tied_embeddings = false;
  bool attention_bias = false;
  // Mixture of experts
  int64_t n_experts = 0, top_k = 0, moe_intermediate = 0;
  bool norm_topk = true;
  QuantSpec quant;  // default quantization (bits 0 = none); overrides in quant_overrides
  std::vector<std::pair<std::string, QuantSpec>> quant_overrides;  // tensor prefix -> spec
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  std::vector<RopeSpec> ropes;
  std::vector<LayerSpec> layers;
  WeightNames names;
  std::vector<std::string> ignored_config_keys;

  // The attention of layer spec `ls` (every backend computes the same softmax scale, cap and window).
  AttentionSpec attention_spec(const LayerSpec& ls) const {
    return {attn_scale > 0 ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim)), attn_softcap, ls.window};
  }

  QuantSpec quant_for(const std::string& prefix) const {
    for (const auto& [p, q] : quant_overrides)
      if (p == prefix) return q;
    return quant;
  }
};

class ConfigReader;

// Shared config parsing used by the architecture files.
void parse_common(ConfigReader& cfg, ModelSpec& spec);       // sizes, eps, tied, eos/bos, quantization
RopeSpec parse_rope(ConfigReader& cfg, const std::string& layer_type, int64_t head_dim, double default_theta);
void parse_moe(ConfigReader& cfg, ModelSpec& spec);          // experts, top-k, moe intermediate size

}  // namespace lmlab
