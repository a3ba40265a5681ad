// KvLayerCache: one layer's key/value history behind one interface. The cache also computes attention
// over what it stores, so compressed caches (TurboQuant) attend on their packed form directly.
// The implementation: kv_layer_blocked (blocks of codec records from a budgeted pool, optional sliding window
// and hot window), parameterised by a KvLayerSpec the model chooses per layer.
#pragma once

#include <cstdint>
#include <memory>

namespace lmlab {

struct KvGeometry {
  int64_t n_heads = 0;     // query heads
  int64_t n_kv_heads = 0;  // key/value heads (GQA: n_heads % n_kv_heads == 0)
  int64_t head_dim = 0;
};

struct AttentionSpec {
  float scale = 1.0f;   // softmax scale applied to q.k
  float softcap = 0.0f; // 0 = none, else cap * tanh(s / cap)
  int64_t window = 0;   // 0 = full causal attention; else key positions p > query position - window
};

class KvLayerCache {
 public:
  virtual ~KvLayerCache() = default;

  // Appends n tokens at positions [n_tokens(), n_tokens() + n). k, v: [n, n_kv_heads, head_dim] (RoPE applied).
  virtual void append(const float* k, const float* v, int64_t n) = 0;

  // Causal attention of n_q queries at positions [q_pos0, q_pos0 + n_q) over positions [0, n_tokens()),
  // which must already include the queries' own tokens. q: [n_q, n_heads, head_dim], out: same shape.
  virtual void attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const = 0;

  virtual int64_t n_tokens() const = 0;     // next position to be written
  virtual void truncate(int64_t n) = 0;     // forget positions >= n
  virtual uint64_t bytes() const = 0;       // bytes this layer holds (allocated, not just used)
};

}  // namespace lmlab
