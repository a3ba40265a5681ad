// Which weights a decode step's attention asks L2 to fetch for the GEMVs after it (kernels/l2_prefetch.h): the output
// projection, then the first rows of the MLP's gate and up projections (the gated GEMV reads row i of both together,
// and its blocks start in row order), up to a byte budget. TurboQuant's decode at long histories is bound by its
// instructions and flash-decoding at short ones by latency, so HBM has room beside them. H100 / H200 L2 holds 50 /
// 60 MB, and the attention's own records stream through it, so the budget stays well under it.
#pragma once

#include <cstdint>

#include "cuda/device_weights.h"
#include "cuda/kernels/l2_prefetch.h"

namespace lmlab::cuda {

struct WeightPrefetchOptions {
  uint64_t budget_bytes = 0;  // 0: none
  int from_percent = 50;      // kernels::cuda::L2Prefetch::from_percent
  // LMLAB_L2_PREFETCH_MB (default 0 until a GPU has measured it) and LMLAB_L2_PREFETCH_FROM (percent).
  static WeightPrefetchOptions from_environment();
};

// Empty without a budget. MoE layers take the output projection only (their experts are not known yet).
kernels::cuda::L2Prefetch weights_after_attention(const DeviceLayer& w, bool moe, const WeightPrefetchOptions& o);

}  // namespace lmlab::cuda
