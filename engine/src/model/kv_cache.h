// KvCache: per-layer key/value history of one sequence, f32, contiguous [n_tokens, n_kv_heads, head_dim].
// The simplest correct cache; the paged, windowed and TurboQuant caches implement the same operations.
#pragma once

#include <cstdint>
#include <vector>

namespace lmlab {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim)
      : layers_(static_cast<size_t>(n_layers)), row_(n_kv_heads * head_dim) {}

  // Appends n tokens of k and v ([n, n_kv_heads, head_dim]) to a layer.
  void append(int64_t layer, const float* k, const float* v, int64_t n) {
    auto& l = layers_[layer];
    l.k.insert(l.k.end(), k, k + n * row_);
    l.v.insert(l.v.end(), v, v + n * row_);
  }
  const float* k(int64_t layer) const { return layers_[layer].k.data(); }
  const float* v(int64_t layer) const { return layers_[layer].v.data(); }
  int64_t n_tokens(int64_t layer) const { return static_cast<int64_t>(layers_[layer].k.size()) / row_; }

  // Drops every token at position >= n (for rewinding a sequence).
  void truncate(int64_t n) {
    for (auto& l : layers_) {
      if (static_cast<int64_t>(l.k.size()) > n * row_) {
        l.k.resize(static_cast<size_t>(n * row_));
        l.v.resize(static_cast<size_t>(n * row_));
      }
    }
  }
  uint64_t bytes() const {
    uint64_t b = 0;
    for (auto& l : layers_) b += (l.k.capacity() + l.v.capacity()) * sizeof(float);
    return b;
  }

 private:
  struct Layer {
    std::vector<float> k, v;
  };
  std::vector<Layer> layers_;
  int64_t row_;
};

}  // namespace lmlab
