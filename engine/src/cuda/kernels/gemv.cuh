// Decode GEMV (gemv.cu), called by matmul.cu for n <= kMaxGemvTokens tokens and by matmul_gathered.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

inline constexpr int kMaxGemvTokens = 8;

// y[t, rows] = x[t, cols] . W^T (+ bias) for t < n <= kMaxGemvTokens, for each part (GemvPart in
// kernels_cuda.h): parts of one format share a launch.
// fusion (kernels_cuda.h): the input's norm where gemv_norms_input(w, n), the output's residual add.
void gemv(const GemvPart* parts, int n_parts, const float* x, int64_t n, cudaStream_t stream,
          const GemvFusion& fusion = {});
bool gemv_norms_input(const DeviceWeight& w, int64_t n);

// Slot s of n_slots, for each part: y[s] = x[s / x_div] . W_e^T (+ bias_e), e = experts[s] read on the device.
void gemv_gathered(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div,
                   int64_t n_slots, cudaStream_t stream);

// out = act(x . gate^T) * (x . up^T) for n tokens (or n_slots gathered slots, n = 1): one launch for one token where
// both weights can share it and DecodeOptions::gate_up_pair is on (each warp reads rows i, i + 1 of both; the same
// floats as the two products and gated_mul); otherwise the products into gate.y and up.y, then gated_mul.
void gemv_gate_up(const GemvPart& gate, const GemvPart& up, GateActivation act, float* out, const int32_t* experts,
                  const float* x, int64_t x_div, int64_t n_slots, int64_t n, cudaStream_t stream,
                  const InputNorm& norm = {});

// The MoE router's logits (router.y, [n, E]) and, in the same launch, each token's top-k (RouteTail in
// kernels_cuda.h) by the block that finishes last, with DecodeOptions::fused_routing (the float and dense kernels;
// otherwise, or a router on the integer path, route_topk's launch after it); route.done: a device counter at 0, left
// at 0.
void gemv_route(const GemvPart& router, const float* x, int64_t n, const RouteTail& route, cudaStream_t stream);

}  // namespace lmlab::kernels::cuda
