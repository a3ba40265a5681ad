// DeviceAllocator: cudaMalloc / cudaFree with byte accounting (see the header).
#include "cuda/device_allocator.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"

namespace lmlab::cuda {

void* DeviceAllocator::allocate(uint64_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls work
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(ErrorKind::out_of_memory, "cuda: " + what,
                fmt::format("cannot allocate {:.1f} MiB of device memory ({:.1f} MiB free of {:.1f} MiB; the engine "
                            "holds {:.1f} MiB); try --gpu-layers",
                            bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, current_bytes() / 1048576.0));
  }
  check(e, what.c_str());
  const uint64_t now = current_.fetch_add(bytes) + bytes;
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void DeviceAllocator::release(void* p, uint64_t bytes) {
  cudaFree(p);  // errors here are from earlier asynchronous work and were reported there
  current_ -= bytes;
}

}  // namespace lmlab::cuda
