// gemma3 (text): (1 + w) RMSNorms, sqrt(hidden) embedding scale, sandwich norms around attention and MLP,
// GELU-tanh, q/k norms, query_pre_attn_scalar^-0.5 scaling, sliding-window layers (layer_types, or every
// sliding_window_pattern-th layer global) with their own local RoPE base, optional soft-capping.
#include <cmath>

#include "arch/registry.h"
#include "config/config_reader.h"

namespace lmlab {

void parse_gemma3(ConfigReader& cfg, ModelSpec& spec) {
  parse_common(cfg, spec);
  spec.norm_weight_offset = 1.0f;
  // HF multiplies by sqrt(hidden) cast to the compute dtype; lmlab computes in f32 (so does the golden run:
  // rounding the scale to bf16 raises the logit error from 5e-6 to 6e-4).
  spec.embed_scale = std::sqrt(static_cast<float>(spec.hidden));
  const double pre_attn = cfg.get<double>("query_pre_attn_scalar");
  if (!(pre_attn > 0) || !std::isfinite(pre_attn))
    throw cfg.error("query_pre_attn_scalar", fmt::format("must be a positive number, got {}", pre_attn));
  spec.attn_scale = 1.0f / std::sqrt(static_cast<float>(pre_attn));
  spec.attn_softcap = static_cast<float>(cfg.get_or<double>("attn_logit_softcapping", 0.0));
  spec.final_softcap = static_cast<float>(cfg.get_or<double>("final_logit_softcapping", 0.0));
  spec.tied_embeddings = cfg.get_or<bool>("tie_word_embeddings", true);
  if (cfg.get_or<bool>("use_bidirectional_attention", false))
    throw cfg.unsupported("use_bidirectional_attention", "bidirectional attention is not supported");
  const int64_t window = cfg.get<int64_t>("sliding_window");
  if (window <= 0) throw cfg.error("sliding_window", fmt::format("must be positive, got {}", window));

  // 5.x: rope_parameters per layer type; 4.x: rope_theta (global) + rope_local_base_freq (sliding).
  const bool per_type = cfg.has("rope_parameters") && cfg.raw()["rope_parameters"].contains("sliding_attention");
  RopeSpec global = parse_rope(cfg, "full_attention", spec.head_dim, 1000000.0);
  RopeSpec local;
  if (per_type) {
    local = parse_rope(cfg, "sliding_attention", spec.head_dim, 10000.0);
  } else {
    ConfigReader plain(nlohmann::json{{"rope_theta", cfg.get_or<double>("rope_local_base_freq", 10000.0)}}, cfg.file());
    local = parse_rope(plain, "", spec.head_dim, 10000.0);
  }
  spec.ropes = {global, local};

  const auto types = parse_layer_types(cfg, spec.n_layers);
  const int64_t pattern = cfg.get_any<int64_t>({"sliding_window_pattern", "_sliding_window_pattern"}).value_or(6);
  if (!types && pattern <= 0)
    throw cfg.error("sliding_window_pattern", fmt::format("must be positive, got {}", pattern));
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const bool sliding = types ? (*types)[l] : (l + 1) % pattern != 0;
    spec.layers[l].window = sliding ? window : 0;
    spec.layers[l].rope = sliding ? 1 : 0;
  }
  spec.names.post_attn_norm = "post_attention_layernorm";
  spec.names.ffn_norm = "pre_feedforward_layernorm";
  spec.names.post_ffn_norm = "post_feedforward_layernorm";
  spec.names.q_norm = "self_attn.q_norm";
  spec.names.k_norm = "self_attn.k_norm";
}

}  // namespace lmlab
