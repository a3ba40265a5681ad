// What one block of a kernel holds on a streaming multiprocessor (registers as allocated, shared memory with the
// driver's reservation, threads), and how many blocks of another kernel still fit beside it. The decode attention
// uses it to leave room for the encode it starts beside (turboquant.cu): a block the SM cannot host waits for the
// encode to end, which puts the whole encode on the step's critical path.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace lmlab::kernels::cuda {

struct SmFootprint {
  int registers = 0;  // per block, in the allocation units the SM hands out (whole warps)
  int shared = 0;     // bytes: static + dynamic + the per-block reservation
  int threads = 0;
};

// A kernel's attributes (registers, static shared memory); zeros when the query fails.
cudaFuncAttributes attributes_of(const void* kernel);
// The footprint of one block of a kernel with attributes `fa` launched with `threads` threads and `dynamic_shared`
// bytes.
SmFootprint footprint_of(const cudaFuncAttributes& fa, int threads, size_t dynamic_shared);
// What one SM offers (the defaults: sm_90's, used where the device query fails).
struct SmLimits {
  int registers = 65536, shared = 233472, threads = 2048, blocks = 32;
  int reserved_shared = 1024;  // per block, on top of what the kernel asks for
};
// The current device's limits, queried once per process.
const SmLimits& sm_limits();
// Blocks of `block` that one SM with `limits` holds beside `resident` (0 when none fits; `resident` zero: the SM
// alone).
int blocks_beside(const SmFootprint& resident, const SmFootprint& block, const SmLimits& limits = sm_limits());

}  // namespace lmlab::kernels::cuda
