// Tensor-core flash-decoding over TurboQuant codes (tq_decode_mma.cu), for turboquant.cu's tq_attention.
#pragma once

#include <cuda_runtime.h>

#include "cuda/kernels/tq_records.cuh"

namespace lmlab::kernels::cuda::tq {

// Lloyd-Max keys of 2-5 bits without QJL, Lloyd-Max 4-bit values, groups of at least 32 dims, head_dim a multiple
// of 32 up to 256: the default K5 / V4 and K4 / V4. Other formats stay on the CUDA-core kernel.
bool decode_mma_supports(const TqKvBlocks& kv);
// One launch over grid (n_kv_heads, splits, n_q), as turboquant.cu's decode kernel: a.part_o / a.part_ml per split
// when splits > 1 (turboquant.cu's merge rotates back), else a.out.
void decode_mma(const TqAttnParams& a, int splits, int64_t n_q, cudaStream_t stream);

}  // namespace lmlab::kernels::cuda::tq
