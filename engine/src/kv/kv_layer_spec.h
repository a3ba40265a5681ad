// KvLayerSpec: what one layer's KV cache stores and how, chosen per layer by the model at load and shared by every
// session (codecs and rotations are immutable). f32_kv_layer_spec is the plain cache; the TurboQuant / affine /
// f16 modes come from kv/turboquant/tq_layer_spec.h.
#pragma once

#include <cstdint>
#include <memory>

#include "kv/codec/kv_codec.h"
#include "kv/kv_layer.h"

namespace lmlab {

struct KvLayerSpec {
  KvGeometry geo;
  std::shared_ptr<const KvCodec> k_codec, v_codec;  // records of every position older than the hot window
  std::shared_ptr<const KvRotation> rotation;       // null: store K and V as they come
  int64_t hot_window = 0;  // most recent positions kept as exact f32 rows (working domain); 0 = none
  int64_t window = 0;      // sliding window of the layer's attention: blocks no query can see are released
};

KvLayerSpec f32_kv_layer_spec(const KvGeometry& geo, int64_t window);

}  // namespace lmlab
