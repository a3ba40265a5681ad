#include "kv/kv_layer_spec.h"

#include "kv/codec/kv_codec_f32.h"

namespace lmlab {

KvLayerSpec f32_kv_layer_spec(const KvGeometry& geo, int64_t window) {
  KvLayerSpec s;
  s.geo = geo;
  s.k_codec = s.v_codec = std::make_shared<KvCodecF32>(geo.head_dim);
  s.window = window;
  return s;
}

}  // namespace lmlab
