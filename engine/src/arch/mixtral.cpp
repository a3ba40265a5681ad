// mixtral: llama attention; every layer's MLP is a block-sparse MoE with experts w1 (gate), w3 (up),
// w2 (down), router softmax -> top-k -> renormalise.
#include "arch/registry.h"
#include "config/config_reader.h"

namespace lmlab {

void parse_mixtral(ConfigReader& cfg, ModelSpec& spec) {
  parse_common(cfg, spec);
  spec.ropes = {parse_rope(cfg, "", spec.head_dim, 1000000.0)};
  parse_moe(cfg, spec);
  spec.moe_intermediate = spec.intermediate;
  spec.norm_topk = true;
  if (auto w = cfg.get_opt<int64_t>("sliding_window"); w && *w > 0)
    for (auto& l : spec.layers) l.window = *w;
  for (auto& l : spec.layers) l.moe = true;
  spec.names.router = "block_sparse_moe.gate";
  spec.names.experts = "block_sparse_moe.experts";
  spec.names.stacked_experts = "block_sparse_moe.switch_mlp";  // mlx-community layout
  spec.names.gate = "w1";
  spec.names.up = "w3";
  spec.names.down = "w2";
}

}  // namespace lmlab
