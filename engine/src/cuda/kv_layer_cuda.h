// KvLayerCuda: one layer's K/V history in device memory, f16 in pages of kPageTokens positions, with a
// device-resident page table the attention kernel reads (kernels/cuda/kernels_cuda.h: KvPages). The CUDA
// backend drives it through the device_* calls; the host KvLayerCache calls copy through the device and
// exist so the layer is a complete KvLayerCache (tests compare it with the CPU layers that way).
// Sliding-window layers keep every page for now (truncate stays possible; docs/cuda.md lists this).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "cuda/device_allocator.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kv/kv_layer.h"

namespace lmlab::cuda {

class KvLayerCuda final : public KvLayerCache {
 public:
  static constexpr int64_t kPageTokens = 256;

  // max_tokens: the context size (sizes the page table).
  KvLayerCuda(DeviceAllocator& alloc, const KvGeometry& geo, int64_t window, int64_t max_tokens);

  // Host side of an append of n positions: pages for them (and their page-table entries), n_tokens() += n.
  // Runs before the kernels that write them, outside any CUDA graph capture.
  void grow(int64_t n);
  // Device side: k, v [n, n_kv_heads, head_dim] f32 written as f16 at device `positions` [n] (already grown).
  void write(const float* k, const float* v, int64_t n, const int32_t* positions, cudaStream_t stream) const;
  // q, out: device [n_q, n_heads, head_dim], query t at positions[t]; n_kv_bound >= every position + 1 (sizes
  // the split-K); scratch: kernels::cuda::attention_scratch_bytes of it.
  void attend_device(const float* q, int64_t n_q, const int32_t* positions, int64_t n_kv_bound,
                     const AttentionSpec& spec, float* out, void* scratch, cudaStream_t stream) const;
  // Unique per layer object: a captured CUDA graph holds this layer's page tables and is keyed by it.
  uint64_t id() const { return id_; }
  int64_t max_tokens() const { return max_pages_ * kPageTokens; }

  void append(const float* k, const float* v, int64_t n) override;
  void attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const override;
  int64_t n_tokens() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  uint64_t bytes() const override;

 private:
  void reserve(int64_t n_total);
  kernels::cuda::KvPages pages() const;

  DeviceAllocator* alloc_;
  KvGeometry geo_;
  int64_t window_, max_pages_;
  int64_t n_tokens_ = 0;
  uint64_t id_;
  std::vector<DeviceBuffer> k_pages_, v_pages_;
  DeviceBuffer k_table_, v_table_;  // [max_pages] device pointers
};

}  // namespace lmlab::cuda
