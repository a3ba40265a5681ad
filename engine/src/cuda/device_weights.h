// The model's weights on the GPU in their stored format (bf16/f16/f32, MLX affine packed words with their
// scales and biases): uploaded once from the host model's mapped tensors, never re-quantized. MoE experts of
// a layer are stacked into one allocation per projection so a kernel can pick an expert by index.
#pragma once

#include <vector>

#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"
#include "forward/transformer.h"

namespace lmlab::cuda {

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

  // Uploads embed, lm_head, the final norm and layers [0, n_layers) of `t`.
  static DeviceWeights upload(DeviceAllocator& alloc, const Transformer& t, int64_t n_layers);
};

}  // namespace lmlab::cuda
