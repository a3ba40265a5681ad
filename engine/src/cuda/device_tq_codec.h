// The device side of a compressed KV layer spec (kv/turboquant/tq_layer_spec.h: TurboQuant or affine records):
// its constants (Lloyd-Max codebooks, the QJL matrix S, the rotation's sign vectors) uploaded once per device block
// table, and the kernels::cuda::TqKvBlocks that tq_kv_write / tq_attention (cuda/kernels/turboquant.cu) address.
// The records themselves are the CPU codec's (same layout and bytes), so everything else stays kv/'s.
#pragma once

#include <memory>

#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"
#include "kv/kv_layer_spec.h"

namespace lmlab::cuda {

class DeviceTqCodec {
 public:
  // Null for specs the f16 kernels serve (f16 records, no rotation); throws unsupported naming the option for a
  // spec the device cannot store (a hot window, a codec other than kv/turboquant's).
  static std::unique_ptr<DeviceTqCodec> make(DeviceAllocator& alloc, const KvLayerSpec& spec);

  // blocks: the layer's device block table ([n_blocks] device pointers).
  kernels::cuda::TqKvBlocks blocks(uint8_t* const* blocks, int64_t block_tokens, int64_t n_kv_heads,
                                   int64_t head_dim) const;

 private:
  DeviceTqCodec(DeviceAllocator& alloc, const KvLayerSpec& spec);
  DeviceBuffer consts_;  // [K centroids 32 | K boundaries 32 | V centroids 32 | V boundaries 32 | d1 | d2 | S]
  kernels::cuda::TqDeviceCodec k_, v_;
  const float* d1_ = nullptr;
  const float* d2_ = nullptr;
  float inv_sqrt_ = 0.0f;
};

}  // namespace lmlab::cuda
