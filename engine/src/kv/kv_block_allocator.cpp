#include "kv/kv_block_allocator.h"

#include <cstdlib>
#include <cstring>

namespace lmlab {

namespace {

class HostKvAllocator final : public KvBlockAllocator {
 public:
  uint8_t* allocate(uint64_t bytes) override {
    return static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));  // size: a multiple of the alignment
  }
  void deallocate(uint8_t* p, uint64_t) override { std::free(p); }
  void copy(uint8_t* dst, const uint8_t* src, uint64_t bytes) override { std::memcpy(dst, src, bytes); }
  const char* name() const override { return "host"; }
};

}  // namespace

std::shared_ptr<KvBlockAllocator> host_kv_allocator() {
  static const auto a = std::make_shared<HostKvAllocator>();
  return a;
}

}  // namespace lmlab
