#include "lmlab/kv_storage.h"

namespace lmlab {

KvMode kv_mode_stored(KvMode requested, Device layer_device) {
  const bool plain = requested == KvMode::f32 || requested == KvMode::f16;
  if (layer_device == Device::cuda && plain) return KvMode::f16;
  return requested;
}

}  // namespace lmlab
