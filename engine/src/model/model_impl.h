// Model::Impl: the loaded transformer and tokenizer behind the public Model handle.
#pragma once

#include <atomic>
#include <optional>

#include "lmlab/model.h"
#include "backend/backend.h"
#include "kv/kv_block_pool.h"
#include "kv/prompt_cache.h"
#include "model/transformer.h"

namespace lmlab {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<Transformer> transformer;  // the host weights and the CPU reference forward
  std::unique_ptr<Backend> backend;          // where forward runs (--device); uses `transformer`
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<KvBlockPool> kv_pool;
  std::unique_ptr<PromptCache> prompt_cache;  // null when off
  // Bytes held by compressed (non-pool) KV layers of all live sessions; sessions report their deltas.
  mutable std::atomic<int64_t> compressed_kv_bytes{0};

  // The per-layer caches of a new sequence: full or sliding-window paged layers, as the spec says.
  KvSequence make_sequence() const;
};

}  // namespace lmlab
