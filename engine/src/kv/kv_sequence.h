// KvSequence: the per-layer caches of one sequence (each layer's spec chosen by the model), and what a session
// does with them as a whole: truncation, resuming from the prompt cache, publishing to it, byte accounting.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kv/kv_layer_blocked.h"

namespace lmlab {

class PromptCache;

struct KvSequence {
  std::vector<std::unique_ptr<KvLayerBlocked>> layers;

  int64_t n_tokens() const { return layers.empty() ? 0 : layers[0]->n_tokens(); }
  void truncate(int64_t n) {
    for (auto& l : layers) l->truncate(n);
  }
  uint64_t bytes() const;
  // False when a sliding-window layer already released blocks that position n needs.
  bool can_truncate(int64_t n) const;
  // Every layer's blocks may be shared (no hot window).
  bool shareable() const;
  // Starts this empty sequence from the prompt cache's longest hit of at most `limit` tokens of prompt; returns
  // the number of positions adopted (0 when none, or when the sequence is not shareable).
  int64_t adopt_prefix(PromptCache& cache, std::span<const int32_t> prompt, int64_t limit);
  // Stores the full blocks of this sequence, whose positions hold `tokens`, in the prompt cache.
  void publish(PromptCache& cache, std::span<const int32_t> tokens) const;
};

}  // namespace lmlab
