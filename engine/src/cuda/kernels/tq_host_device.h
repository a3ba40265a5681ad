// LMLAB_TQ_HD: a function both the kernels and the CPU tests compile (tq_pair_index.h, tq_staging.h), so CI, which
// has no GPU, checks the index and layout math the kernels use.
#pragma once

#if defined(__CUDACC__)
#define LMLAB_TQ_HD __host__ __device__ __forceinline__
#else
#define LMLAB_TQ_HD inline
#endif
