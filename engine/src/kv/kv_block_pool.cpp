#include "kv/kv_block_pool.h"

#include <fmt/format.h>

#include "lmlab/error.h"

namespace lmlab {

KvBlockPool::KvBlockPool(int64_t block_tokens, int64_t row_floats, uint64_t budget_bytes)
    : block_tokens_(block_tokens),
      row_floats_(row_floats),
      budget_(budget_bytes),
      live_(std::make_shared<std::atomic<uint64_t>>(0)),
      allocated_(*live_) {}

std::shared_ptr<KvBlock> KvBlockPool::wrap(KvBlock* b) {
  const uint64_t bytes = block_bytes();
  const uint64_t now = allocated_.fetch_add(bytes) + bytes;
  if (budget_ && now > budget_) {
    allocated_.fetch_sub(bytes);
    delete b;
    throw Error(ErrorKind::out_of_memory, "kv cache",
                fmt::format("the KV cache budget of {:.1f} MiB is exhausted", budget_ / 1048576.0));
  }
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  auto live = live_;
  return std::shared_ptr<KvBlock>(b, [live, bytes](KvBlock* p) {
    live->fetch_sub(bytes);
    delete p;
  });
}

std::shared_ptr<KvBlock> KvBlockPool::allocate() {
  auto* b = new KvBlock;
  b->k.resize(static_cast<size_t>(block_tokens_ * row_floats_));
  b->v.resize(static_cast<size_t>(block_tokens_ * row_floats_));
  return wrap(b);
}

std::shared_ptr<KvBlock> KvBlockPool::clone(const KvBlock& src) { return wrap(new KvBlock(src)); }

}  // namespace lmlab
