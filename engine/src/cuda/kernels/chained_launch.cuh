// Chained launches (programmatic dependent launch, sm_90+): a decode step is ~400 small kernels in a row, and each
// one used to start only after the one before it had drained, then spent its first microseconds getting its loads
// in flight. A kernel launched by launch_chained() may be scheduled while the kernel before it still runs: the GEMV
// issues its weight loads (which no earlier kernel writes) and only then waits for the activations.
//
// The contract, for every kernel launched this way:
// - chain_wait() before reading anything an earlier kernel of the stream wrote, and before writing anything an
//   earlier kernel may still read; weights and other data written before the stream's work began may be read before;
// - every block calls chain_wait() before it exits, even one with nothing to do: a kernel then completes only after
//   its predecessor has, so the order stays transitive (the kernel after it may read what two kernels back wrote);
// - chain_release() lets the next chained kernel be scheduled (called right after chain_wait(): the next one only
//   occupies free SM slots and waits in turn).
// Kernels launched with <<<>>> (cuBLAS's too) keep the stream's full ordering; they may come before or after a
// chained one. Stream capture keeps the relaxed edges in the decode graph. LMLAB_CUDA_CHAINED=0 launches everything
// in the plain way (to measure what chaining saves); devices before sm_90 always do.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ void chain_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void chain_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The usual start of a chained kernel with no work of its own to do first.
__device__ __forceinline__ void chain_enter() {
  chain_wait();
  chain_release();
}

bool chained_launches();  // kernels_cuda.h

template <class... Params, class... Args>
void launch_chained(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid, config.blockDim = block, config.dynamicSmemBytes = smem, config.stream = stream;
  config.attrs = &attr, config.numAttrs = chained_launches() ? 1 : 0;
  lmlab::cuda::check(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), what);
}

}  // namespace lmlab::kernels::cuda
