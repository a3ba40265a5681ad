// The KV cache of the CUDA backend's layers: kv/'s KvLayerBlocked (block tables, copy-on-write, prompt cache,
// sliding-window release, byte accounting and --kv-budget-mb, as on the CPU) over blocks of device memory in the
// layer's spec: f16 rows written and attended by cuda/kernels/attention.cu, TurboQuant / affine records by
// cuda/kernels/turboquant.cu (constants from cuda/device_tq_codec.h).
//   - DeviceKvBlockAllocator: the pool's allocator. KV blocks are small (B positions of one layer) and come and go
//     with every sequence; cudaMalloc per block would synchronise the device each time, so blocks are carved from
//     64 MiB slabs and recycled through a free list per size. Slabs are counted by the backend's DeviceAllocator.
//   - DeviceBlockTable: a layer's block table on the device (what the kernels address), kept in step with the
//     layer's blocks before every forward. Sized for the context, so a captured CUDA graph that holds its address
//     replays at any position.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "cuda/device_allocator.h"
#include "cuda/device_tq_codec.h"
#include "cuda/kernels/kernels_cuda.h"
#include "kv/kv_block_allocator.h"
#include "kv/kv_layer_blocked.h"

namespace lmlab::cuda {

class DeviceKvBlockAllocator final : public KvBlockAllocator {
 public:
  explicit DeviceKvBlockAllocator(std::shared_ptr<DeviceAllocator> device) : device_(std::move(device)) {}
  uint8_t* allocate(uint64_t bytes) override;  // null when the device has no memory for another slab
  void deallocate(uint8_t* p, uint64_t bytes) override;
  void copy(uint8_t* dst, const uint8_t* src, uint64_t bytes) override;
  const char* name() const override { return "cuda device"; }

 private:
  std::shared_ptr<DeviceAllocator> device_;
  std::mutex mu_;
  std::vector<DeviceBuffer> slabs_;
  uint64_t slab_used_ = 0;  // bytes of the last slab handed out
  std::unordered_map<uint64_t, std::vector<uint8_t*>> free_;  // by (rounded) block size
};

class DeviceBlockTable final : public KvLayerAttachment {
 public:
  DeviceBlockTable(DeviceAllocator& alloc, int64_t max_blocks);
  // The table of `layer`, made on first use (max_blocks: the context size in blocks).
  static DeviceBlockTable& of(const KvLayerBlocked& layer, DeviceAllocator& alloc, int64_t max_blocks);

  // Uploads the entries of layer.blocks() that changed since the last sync (on `stream`, before the kernels): those
  // from the layer's first changed block on (take_first_changed_block: this table is its only taker).
  void sync(KvLayerBlocked& layer, cudaStream_t stream);
  kernels::cuda::KvBlocks blocks(const KvLayerBlocked& layer) const;
  // The compressed spec's device constants (null for f16 layers), made with the table.
  const DeviceTqCodec* tq() const { return tq_.get(); }
  kernels::cuda::TqKvBlocks tq_blocks(const KvLayerBlocked& layer) const;
  // Unique per table (a captured CUDA graph holds the tables of one sequence and is keyed by its first layer's).
  uint64_t id() const { return id_; }

 private:
  int64_t max_blocks_;
  uint64_t id_;
  DeviceBuffer table_;             // [max_blocks] device pointers
  std::vector<uint16_t*> mirror_;  // what the device table holds now
  int64_t mirror_held_ = 0;        // mirror_ entries at or past this are null
  bool walked_ = false;            // false: the next sync walks every entry (the first, or after one that threw)
  std::unique_ptr<DeviceTqCodec> tq_;
};

// The device side of one layer's KV for one forward: grow() before the chunk's kernels (host: blocks and table),
// then write() and attend() on the stream.
class DeviceKvLayer {
 public:
  DeviceKvLayer(KvLayerBlocked& layer, DeviceAllocator& alloc, int64_t max_blocks)
      : layer_(layer), table_(DeviceBlockTable::of(layer, alloc, max_blocks)) {}

  void grow(int64_t n, cudaStream_t stream);
  // k, v: device [n, n_kv_heads, head_dim] f32 written as the spec's records (f16 rows, or TurboQuant / affine
  // records encoded on the device) at device `positions` [n] (already grown).
  void write(const float* k, const float* v, int64_t n, const int32_t* positions, cudaStream_t stream) const;
  // The f16 rows' blocks, for a kernel that writes them itself (qk_norm_rope_kv_write); none when the records are
  // TurboQuant / affine (write() encodes those).
  std::optional<kernels::cuda::KvBlocks> f16_blocks() const;
  // q, out: device [n_q, n_heads, head_dim], query t at positions[t]; n_kv_bound >= every position + 1 (sizes
  // the split-K); scratch: kernels::cuda::attention_scratch_bytes of it. after_write: the last launch on the stream
  // was write() of these queries' positions (TurboQuant's attention may then start beside the encode).
  void attend(const float* q, int64_t n_q, const int32_t* positions, int64_t n_kv_bound, const AttentionSpec& spec,
              float* out, void* scratch, cudaStream_t stream, bool after_write = false) const;
  uint64_t id() const { return table_.id(); }

 private:
  KvLayerBlocked& layer_;
  DeviceBlockTable& table_;
};

}  // namespace lmlab::cuda
