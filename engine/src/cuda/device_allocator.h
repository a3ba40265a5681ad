// DeviceAllocator: every byte of device memory the CUDA backend holds (weights, KV pages, scratch) goes
// through one allocator that counts current and peak bytes, so the engine reports GPU memory from its own
// books (ModelCounters, lmlab_memory_device_*) and tests can hold them against the driver's cudaMemGetInfo.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace lmlab::cuda {

class DeviceAllocator {
 public:
  // Throws out_of_memory naming `what` and the bytes asked for (and free on the device) when cudaMalloc fails.
  void* allocate(uint64_t bytes, const std::string& what);
  void release(void* p, uint64_t bytes);

  uint64_t current_bytes() const { return current_.load(); }
  uint64_t peak_bytes() const { return peak_.load(); }

 private:
  std::atomic<uint64_t> current_{0}, peak_{0};
};

// One allocation, freed on destruction (move-only).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceAllocator& a, uint64_t bytes, const std::string& what)
      : alloc_(&a), bytes_(bytes), ptr_(bytes ? a.allocate(bytes, what) : nullptr) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      alloc_ = o.alloc_, bytes_ = o.bytes_, ptr_ = o.ptr_;
      o.ptr_ = nullptr, o.bytes_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  void reset() {
    if (ptr_) alloc_->release(ptr_, bytes_);
    ptr_ = nullptr, bytes_ = 0;
  }
  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  uint64_t bytes() const { return bytes_; }

 private:
  DeviceAllocator* alloc_ = nullptr;
  uint64_t bytes_ = 0;
  void* ptr_ = nullptr;
};

}  // namespace lmlab::cuda
