// Tensor-core flash-decoding over TurboQuant codes with warps owning positions (tq_decode_warps.cu), for
// turboquant.cu's tq_attention; tq_decode_mma.cu's kernel takes the formats this one does not.
#pragma once

#include <cuda_runtime.h>

#include "cuda/kernels/tq_records.cuh"

namespace lmlab::kernels::cuda::tq {

// Of what decode_mma_supports takes: head_dim 64 or 128 with one value group a head (the default layouts of the 8B
// and 30b-a3b shapes).
bool decode_warps_supports(const TqKvBlocks& kv);
// One launch over grid (n_kv_heads, splits, n_q), as decode_mma: a.part_o / a.part_ml per split when splits > 1,
// else a.out.
void decode_warps(const TqAttnParams& a, int splits, int64_t n_q, cudaStream_t stream);

}  // namespace lmlab::kernels::cuda::tq
