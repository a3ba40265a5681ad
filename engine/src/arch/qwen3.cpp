// qwen3: llama plus per-head RMSNorm of q and k before RoPE; optional sliding window on layer_types.
#include "arch/registry.h"
#include "config/config_reader.h"

namespace lmlab {

// Qwen's sliding window: use_sliding_window with layer_types, or (4.x) layers >= max_window_layers.
static void parse_qwen_windows(ConfigReader& cfg, ModelSpec& spec) {
  const bool use_sw = cfg.get_or<bool>("use_sliding_window", false);
  const auto window = cfg.get_opt<int64_t>("sliding_window");
  const auto max_window_layers = cfg.get_opt<int64_t>("max_window_layers");
  const auto types = parse_layer_types(cfg, spec.n_layers);
  if (!use_sw) return;
  if (!window || *window <= 0) throw cfg.error("sliding_window", "use_sliding_window needs a positive window");
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    bool sliding = types ? (*types)[l] : (max_window_layers && l >= *max_window_layers);
    if (sliding) spec.layers[l].window = *window;
  }
}

void parse_qwen3(ConfigReader& cfg, ModelSpec& spec) {
  parse_common(cfg, spec);
  spec.ropes = {parse_rope(cfg, "", spec.head_dim, 1000000.0)};
  spec.names.q_norm = "self_attn.q_norm";
  spec.names.k_norm = "self_attn.k_norm";
  parse_qwen_windows(cfg, spec);
}

}  // namespace lmlab
