// Model::Impl: the loaded transformer and tokenizer behind the public Model handle.
#pragma once

#include <optional>
#include <vector>

#include "lmlab/model.h"
#include "backend/backend.h"
#include "kv/kv_block_pool.h"
#include "kv/kv_layer_spec.h"
#include "kv/kv_sequence.h"
#include "kv/prompt_cache.h"
#include "forward/transformer.h"

namespace lmlab {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<Transformer> transformer;  // the host weights and the CPU reference forward
  std::unique_ptr<Backend> backend;          // where forward runs (--device); uses `transformer`
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<KvBlockPool> kv_pool;         // every session's host KV blocks, whatever the mode
  std::unique_ptr<KvBlockPool> device_kv_pool;  // the device layers' blocks (backend->kv_allocator()), or null
  std::unique_ptr<PromptCache> prompt_cache;  // null when off
  std::vector<KvLayerSpec> kv_specs;          // per layer: codecs (--kv-mode), sliding window

  // The per-layer caches of a new sequence, as kv_specs say.
  KvSequence make_sequence() const;
};

}  // namespace lmlab
