// qwen3_moe: qwen3 attention; MoE MLP (softmax router, top-k, optional renormalisation) on layers picked by
// decoder_sparse_step and mlp_only_layers; no shared expert.
#include <algorithm>

#include "arch/registry.h"
#include "config/config_reader.h"

namespace lmlab {

void parse_qwen3_moe(ConfigReader& cfg, ModelSpec& spec) {
  parse_qwen3(cfg, spec);
  parse_moe(cfg, spec);
  spec.moe_intermediate = cfg.get<int64_t>("moe_intermediate_size");
  spec.norm_topk = cfg.get_or<bool>("norm_topk_prob", false);
  const int64_t step = cfg.get_or<int64_t>("decoder_sparse_step", 1);
  const auto mlp_only = cfg.get_or<std::vector<int64_t>>("mlp_only_layers", {});
  if (step <= 0) throw cfg.error("decoder_sparse_step", "must be positive");
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const bool dense = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end();
    spec.layers[l].moe = !dense && (l + 1) % step == 0;
  }
}

}  // namespace lmlab
