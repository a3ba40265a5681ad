// llama (Llama 2/3): the baseline pre-norm decoder; RoPE default / linear / llama3 scaling.
#include "arch/registry.h"
#include "config/config_reader.h"

namespace lmlab {

void parse_llama(ConfigReader& cfg, ModelSpec& spec) {
  parse_common(cfg, spec);
  spec.ropes = {parse_rope(cfg, "", spec.head_dim, 10000.0)};
}

}  // namespace lmlab
