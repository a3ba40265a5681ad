// KvBlockAllocator: where KV block bytes live. The host one is aligned host memory, which the CPU layer's encode
// and attention address directly (no indirection on the attention's path: the allocator is called only to create,
// copy and free blocks). A device backend gives the pool its own allocator (KV pages in GPU memory) and its own
// encode / attention kernels over the same block layout, and keeps the block tables, copy-on-write, prompt cache
// and byte accounting, which only handle KvBlock pointers and sizes.
#pragma once

#include <cstdint>
#include <memory>

namespace lmlab {

class KvBlockAllocator {
 public:
  virtual ~KvBlockAllocator() = default;
  // 64-byte aligned memory of `bytes`, or null when there is none.
  virtual uint8_t* allocate(uint64_t bytes) = 0;
  virtual void deallocate(uint8_t* p, uint64_t bytes) = 0;
  // dst <- src, both from this allocator (copy-on-write of a shared block).
  virtual void copy(uint8_t* dst, const uint8_t* src, uint64_t bytes) = 0;
  virtual const char* name() const = 0;  // for error messages: "host", "cuda:0", ...
};

// Host memory (std::aligned_alloc); shared by every pool that is not given another.
std::shared_ptr<KvBlockAllocator> host_kv_allocator();

}  // namespace lmlab
