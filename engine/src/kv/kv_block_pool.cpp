#include "kv/kv_block_pool.h"

#include <fmt/format.h>

#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab {

KvBlockPool::KvBlockPool(int64_t block_tokens, uint64_t budget_bytes, std::shared_ptr<KvBlockAllocator> allocator)
    : block_tokens_(block_tokens),
      budget_(budget_bytes),
      allocator_(std::move(allocator)),
      live_(std::make_shared<std::atomic<uint64_t>>(0)) {
  if (block_tokens <= 0) throw Error(ErrorKind::invalid_input, std::string(engine_option("kv_block_tokens").flag), "must be positive");
}

std::shared_ptr<KvBlock> KvBlockPool::allocate(uint64_t bytes) {
  const uint64_t now = live_->fetch_add(bytes) + bytes;
  if (budget_ && now > budget_) {
    live_->fetch_sub(bytes);
    throw Error(ErrorKind::out_of_memory, "kv cache",
                fmt::format("the KV cache budget of {:.1f} MiB (--kv-budget-mb) is exhausted: {} bytes in use, a block "
                            "of {} more",
                            budget_ / 1048576.0, now - bytes, bytes));
  }
  uint8_t* data = allocator_->allocate(bytes);
  if (!data) {
    live_->fetch_sub(bytes);
    throw Error(ErrorKind::out_of_memory, "kv cache",
                fmt::format("cannot allocate a KV block of {} bytes ({} memory)", bytes, allocator_->name()));
  }
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  auto live = live_;
  auto alloc = allocator_;
  return std::shared_ptr<KvBlock>(new KvBlock{data, bytes}, [live, alloc](KvBlock* b) {
    alloc->deallocate(b->data, b->bytes);
    live->fetch_sub(b->bytes);
    delete b;
  });
}

std::shared_ptr<KvBlock> KvBlockPool::clone(const KvBlock& src) {
  auto b = allocate(src.bytes);
  allocator_->copy(b->data, src.data, src.bytes);
  return b;
}

}  // namespace lmlab
