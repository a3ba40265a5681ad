// The device KV cache (see device_kv.h).
#include "cuda/device_kv.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"

namespace lmlab::cuda {

namespace {
constexpr uint64_t kSlabBytes = uint64_t{64} << 20;
constexpr uint64_t kAlign = 256;
uint64_t rounded(uint64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
}  // namespace

uint8_t* DeviceKvBlockAllocator::allocate(uint64_t bytes) {
  const uint64_t size = rounded(bytes);
  std::lock_guard lock(mu_);
  if (auto it = free_.find(size); it != free_.end() && !it->second.empty()) {
    uint8_t* p = it->second.back();
    it->second.pop_back();
    return p;
  }
  if (slabs_.empty() || slab_used_ + size > slabs_.back().bytes()) {
    try {
      slabs_.emplace_back(*device_, std::max(kSlabBytes, size), "KV blocks");
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::out_of_memory) return nullptr;  // the pool names the budget and the allocator
      throw;
    }
    slab_used_ = 0;
  }
  uint8_t* p = slabs_.back().get<uint8_t>() + slab_used_;
  slab_used_ += size;
  return p;
}

void DeviceKvBlockAllocator::deallocate(uint8_t* p, uint64_t bytes) {
  std::lock_guard lock(mu_);
  free_[rounded(bytes)].push_back(p);
}

void DeviceKvBlockAllocator::copy(uint8_t* dst, const uint8_t* src, uint64_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "KV block copy-on-write");
}

DeviceBlockTable::DeviceBlockTable(DeviceAllocator& alloc, int64_t max_blocks)
    : max_blocks_(max_blocks),
      table_(alloc, static_cast<uint64_t>(std::max<int64_t>(1, max_blocks)) * sizeof(uint16_t*), "KV block table"),
      mirror_(static_cast<size_t>(max_blocks), nullptr) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id++;
  check(cudaMemset(table_.get(), 0, table_.bytes()), "KV block table");
}

DeviceBlockTable& DeviceBlockTable::of(const KvLayerBlocked& layer, DeviceAllocator& alloc, int64_t max_blocks) {
  auto& slot = layer.attachment();
  if (!slot) {
    auto table = std::make_unique<DeviceBlockTable>(alloc, max_blocks);
    table->tq_ = DeviceTqCodec::make(alloc, layer.spec());
    slot = std::move(table);
  }
  auto* table = dynamic_cast<DeviceBlockTable*>(slot.get());
  if (!table) throw Error(ErrorKind::internal, "cuda kv", "a device layer carries another backend's state");
  return *table;
}

void DeviceBlockTable::sync(KvLayerBlocked& layer, cudaStream_t stream) {
  const auto& blocks = layer.blocks();
  if (static_cast<int64_t>(blocks.size()) > max_blocks_)
    throw Error(ErrorKind::internal, "cuda kv",
                fmt::format("{} KV blocks exceed the device block table's {}", blocks.size(), max_blocks_));
  // Upload the changed entries as runs (a decode step changes at most one or two; adopting a prefix, many). Only
  // entries from the layer's first change on can differ, and only those the layer holds or the mirror still holds:
  // past both, every entry is null. So a decode step walks one or two entries, not the whole table.
  const int64_t first = layer.take_first_changed_block();
  int64_t b = walked_ ? first : 0;
  walked_ = false;  // until this walk is done: one that throws part way leaves the next to walk everything
  const int64_t n = std::max(static_cast<int64_t>(blocks.size()), mirror_held_);
  auto want = [&](int64_t i) {
    return i < static_cast<int64_t>(blocks.size()) && blocks[i] ? reinterpret_cast<uint16_t*>(blocks[i]->data)
                                                                 : nullptr;
  };
  while (b < n) {
    if (mirror_[b] == want(b)) {
      ++b;
      continue;
    }
    int64_t e = b;
    while (e < n && mirror_[e] != want(e)) mirror_[e] = want(e), ++e;
    check(cudaMemcpyAsync(table_.get<uint16_t*>() + b, mirror_.data() + b, (e - b) * sizeof(uint16_t*),
                          cudaMemcpyHostToDevice, stream),
          "KV block table");
    b = e;
  }
  mirror_held_ = static_cast<int64_t>(blocks.size());
  walked_ = true;
}

kernels::cuda::KvBlocks DeviceBlockTable::blocks(const KvLayerBlocked& layer) const {
  const KvGeometry& g = layer.spec().geo;
  return {table_.get<uint16_t*>(), layer.block_tokens(), g.n_kv_heads, g.head_dim};
}

kernels::cuda::TqKvBlocks DeviceBlockTable::tq_blocks(const KvLayerBlocked& layer) const {
  if (!tq_) throw Error(ErrorKind::internal, "cuda kv", "an f16 layer addressed as compressed records");
  const KvGeometry& g = layer.spec().geo;
  return tq_->blocks(reinterpret_cast<uint8_t* const*>(table_.get<uint16_t*>()), layer.block_tokens(), g.n_kv_heads,
                     g.head_dim);
}

void DeviceKvLayer::grow(int64_t n, cudaStream_t stream) {
  layer_.extend(n);
  table_.sync(layer_, stream);
}

void DeviceKvLayer::write(const float* k, const float* v, int64_t n, const int32_t* positions,
                          cudaStream_t stream) const {
  if (table_.tq()) kernels::cuda::tq_kv_write(table_.tq_blocks(layer_), k, v, n, positions, stream);
  else kernels::cuda::kv_write(table_.blocks(layer_), k, v, n, positions, stream);
}

std::optional<kernels::cuda::KvBlocks> DeviceKvLayer::f16_blocks() const {
  if (table_.tq()) return std::nullopt;
  return table_.blocks(layer_);
}

void DeviceKvLayer::attend(const float* q, int64_t n_q, const int32_t* positions, int64_t n_kv_bound,
                           const AttentionSpec& spec, float* out, void* scratch, cudaStream_t stream,
                           bool after_write) const {
  if (table_.tq()) {
    kernels::cuda::tq_attention(table_.tq_blocks(layer_), q, out, n_q, layer_.spec().geo.n_heads, positions, n_kv_bound,
                                spec.scale, spec.softcap, spec.window, kernels::cuda::kMaxAttentionSplits, scratch,
                                stream, after_write);
    return;
  }
  kernels::cuda::attention(table_.blocks(layer_), q, out, n_q, layer_.spec().geo.n_heads, positions, n_kv_bound,
                           spec.scale, spec.softcap, spec.window, kernels::cuda::kMaxAttentionSplits, scratch, stream);
}

}  // namespace lmlab::cuda
