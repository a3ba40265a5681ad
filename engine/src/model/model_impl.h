// Model::Impl: the loaded transformer and tokenizer behind the public Model handle.
#pragma once

#include <optional>
#include <vector>

#include "lmlab/model.h"
#include "kv/kv_block_pool.h"
#include "kv/kv_layer_spec.h"
#include "kv/kv_sequence.h"
#include "kv/prompt_cache.h"
#include "model/transformer.h"

namespace lmlab {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<Transformer> transformer;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<KvBlockPool> kv_pool;       // every session's KV blocks, whatever the mode
  std::unique_ptr<PromptCache> prompt_cache;  // null when off
  std::vector<KvLayerSpec> kv_specs;          // per layer: codecs (--kv-mode), sliding window

  // The per-layer caches of a new sequence, as kv_specs say.
  KvSequence make_sequence() const;
};

}  // namespace lmlab
