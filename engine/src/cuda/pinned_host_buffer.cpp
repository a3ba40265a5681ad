#include "cuda/pinned_host_buffer.h"

#include <cuda_runtime.h>

namespace lmlab::cuda {

PinnedHostBuffer::~PinnedHostBuffer() {
  if (data_) cudaFreeHost(data_);
}

void* PinnedHostBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_) return data_;
  if (data_) cudaFreeHost(data_);
  data_ = nullptr, bytes_ = 0;
  if (cudaHostAlloc(&data_, bytes, cudaHostAllocDefault) != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: pageable copies still work
    data_ = nullptr;
    return nullptr;
  }
  bytes_ = bytes;
  return data_;
}

}  // namespace lmlab::cuda
