// Page-locked host memory for a device-to-host copy the host waits on (a decode step's logits, 0.6 MB at a 152K
// vocabulary): into pageable memory the driver stages the copy through its own pinned buffer piece by piece, while
// the GPU idles until the host has the token and launches the next step.
#pragma once

#include <cstddef>

namespace lmlab::cuda {

class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  ~PinnedHostBuffer();

  // At least `bytes` of pinned memory (grown, never shrunk), or null where the driver refuses it: the caller then
  // copies into pageable memory as before.
  void* reserve(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace lmlab::cuda
