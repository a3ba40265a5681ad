// The model's weights on the GPU in their stored format (bf16/f16/f32, MLX affine packed words with their
// scales and biases): uploaded once from the host model's mapped tensors, never re-quantized. MoE experts of
// a layer are stacked into one allocation per projection so a kernel can pick an expert by index; with
// --stream-experts the routed experts are not uploaded: their DeviceWeights view the VRAM expert cache's slot
// pool instead (cuda/device_expert_cache.h), which holds each expert in the same per-matrix byte layout.
#pragma once

#include <vector>

#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"
#include "forward/transformer.h"

namespace lmlab::cuda {

class DeviceExpertCache;

struct DeviceLinear {
  kernels::cuda::DeviceWeight w;
  std::vector<DeviceBuffer> buffers;
};

struct DeviceLayer {
  DeviceBuffer attn_norm, post_attn_norm, ffn_norm, post_ffn_norm, q_norm, k_norm;  // f32, null when absent
  DeviceLinear q, k, v, o;
  DeviceLinear gate, up, down;                 // dense MLP, or the stacked experts of an MoE layer
  DeviceLinear router;                         // MoE only
};

struct DeviceWeights {
  DeviceLinear embed, lm_head;  // lm_head.buffers empty when tied (lm_head.w = embed.w)
  DeviceBuffer final_norm;
  std::vector<DeviceBuffer> inv_freq;  // per ModelSpec::ropes entry
  std::vector<DeviceLayer> layers;     // the device layers [0, n)

  // Uploads embed, lm_head, the final norm and layers [0, n_layers) of `t`. With `streamed` (--stream-experts)
  // MoE layers upload their router only; their gate/up/down view the expert cache's slots (no buffers owned).
  static DeviceWeights upload(DeviceAllocator& alloc, const Transformer& t, int64_t n_layers,
                              const DeviceExpertCache* streamed = nullptr);
};

// One matrix as a stacked DeviceWeight holds it: the format (pointers null, strides 0) and the bytes of its parts.
struct StoredFormat {
  kernels::cuda::DeviceWeight w;
  uint64_t weight_bytes = 0;  // packed words (affine) or elements (dense)
  uint64_t scale_bytes = 0;   // affine: the scales, and as many for the biases
  bool has_bias = false;      // a Linear bias: rows floats
};
StoredFormat stored_format(const Linear& l);
// Whether matrices of these formats can share one stacked DeviceWeight (kernel template, shape, bias).
bool same_stored_format(const StoredFormat& a, const StoredFormat& b);
// Copies l's stored bytes (format f) to device memory: the weight, the scales and biases (affine) and the bias
// (f.has_bias). stream == nullptr: synchronous; else cudaMemcpyAsync on `stream`, and the host bytes must stay
// valid until the copy has run (pinned memory is copied by DMA after the call returns).
void copy_stored(const Linear& l, const StoredFormat& f, void* weight, void* scales, void* biases, float* bias,
                 cudaStream_t stream);

}  // namespace lmlab::cuda
