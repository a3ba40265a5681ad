// KvSequence: the per-layer caches of one sequence (the kind of each layer is chosen by the model).
#pragma once

#include <memory>
#include <vector>

#include "kv/kv_layer.h"

namespace lmlab {

struct KvSequence {
  std::vector<std::unique_ptr<KvLayerCache>> layers;

  int64_t n_tokens() const { return layers.empty() ? 0 : layers[0]->n_tokens(); }
  void truncate(int64_t n) {
    for (auto& l : layers) l->truncate(n);
  }
  uint64_t bytes() const {
    uint64_t b = 0;
    for (const auto& l : layers) b += l->bytes();
    return b;
  }
};

}  // namespace lmlab
