// KvLayerCuda: paged f16 K/V in device memory (see the header).
#include "cuda/kv_layer_cuda.h"

#include <fmt/format.h>

#include <atomic>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"

namespace lmlab::cuda {

namespace {
uint64_t page_bytes(const KvGeometry& g) {
  return static_cast<uint64_t>(KvLayerCuda::kPageTokens * g.n_kv_heads * g.head_dim) * sizeof(uint16_t);
}
}  // namespace

KvLayerCuda::KvLayerCuda(DeviceAllocator& alloc, const KvGeometry& geo, int64_t window, int64_t max_tokens)
    : alloc_(&alloc), geo_(geo), window_(window), max_pages_((max_tokens + kPageTokens - 1) / kPageTokens) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id++;
  k_table_ = DeviceBuffer(alloc, max_pages_ * sizeof(uint16_t*), "KV page table");
  v_table_ = DeviceBuffer(alloc, max_pages_ * sizeof(uint16_t*), "KV page table");
}

void KvLayerCuda::reserve(int64_t n_total) {
  const int64_t need = (n_total + kPageTokens - 1) / kPageTokens;
  if (need > max_pages_)
    throw Error(ErrorKind::invalid_input, "--ctx-size",
                fmt::format("{} positions exceed the device KV cache's context size {}", n_total,
                            max_pages_ * kPageTokens));
  const int64_t have = static_cast<int64_t>(k_pages_.size());
  if (need <= have) return;
  std::vector<uint16_t*> k_new, v_new;
  for (int64_t p = have; p < need; ++p) {
    k_pages_.emplace_back(*alloc_, page_bytes(geo_), "KV page");
    v_pages_.emplace_back(*alloc_, page_bytes(geo_), "KV page");
    k_new.push_back(k_pages_.back().get<uint16_t>());
    v_new.push_back(v_pages_.back().get<uint16_t>());
  }
  check(cudaMemcpy(k_table_.get<uint16_t*>() + have, k_new.data(), k_new.size() * sizeof(uint16_t*),
                   cudaMemcpyHostToDevice),
        "KV page table");
  check(cudaMemcpy(v_table_.get<uint16_t*>() + have, v_new.data(), v_new.size() * sizeof(uint16_t*),
                   cudaMemcpyHostToDevice),
        "KV page table");
}

kernels::cuda::KvPages KvLayerCuda::pages() const {
  return {k_table_.get<uint16_t*>(), v_table_.get<uint16_t*>(), kPageTokens, geo_.n_kv_heads, geo_.head_dim};
}

void KvLayerCuda::grow(int64_t n) {
  reserve(n_tokens_ + n);
  n_tokens_ += n;
}

void KvLayerCuda::write(const float* k, const float* v, int64_t n, const int32_t* positions,
                        cudaStream_t stream) const {
  kernels::cuda::kv_write(pages(), k, v, n, positions, stream);
}

void KvLayerCuda::attend_device(const float* q, int64_t n_q, const int32_t* positions, int64_t n_kv_bound,
                                const AttentionSpec& spec, float* out, void* scratch, cudaStream_t stream) const {
  kernels::cuda::attention(pages(), q, out, n_q, geo_.n_heads, positions, n_kv_bound, spec.scale, spec.softcap,
                           spec.window, kernels::cuda::kMaxAttentionSplits, scratch, stream);
}

namespace {
// Positions [pos0, pos0 + n) on the device, for the host-side calls.
DeviceBuffer positions_of(DeviceAllocator& a, int64_t pos0, int64_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) p[t] = static_cast<int32_t>(pos0 + t);
  DeviceBuffer b(a, std::max<int64_t>(1, n) * sizeof(int32_t), "positions");
  check(cudaMemcpy(b.get(), p.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice), "positions");
  return b;
}
}  // namespace

void KvLayerCuda::append(const float* k, const float* v, int64_t n) {
  const uint64_t bytes = static_cast<uint64_t>(n * geo_.n_kv_heads * geo_.head_dim) * sizeof(float);
  DeviceBuffer dk(*alloc_, bytes, "KV append staging"), dv(*alloc_, bytes, "KV append staging");
  check(cudaMemcpy(dk.get(), k, bytes, cudaMemcpyHostToDevice), "KV append");
  check(cudaMemcpy(dv.get(), v, bytes, cudaMemcpyHostToDevice), "KV append");
  DeviceBuffer pos = positions_of(*alloc_, n_tokens_, n);
  grow(n);
  write(dk.get<float>(), dv.get<float>(), n, pos.get<int32_t>(), nullptr);
  check(cudaStreamSynchronize(nullptr), "KV append");
}

void KvLayerCuda::attend(const float* q, int64_t n_q, int64_t q_pos0, const AttentionSpec& spec, float* out) const {
  const uint64_t bytes = static_cast<uint64_t>(n_q * geo_.n_heads * geo_.head_dim) * sizeof(float);
  DeviceBuffer dq(*alloc_, bytes, "attention staging"), dout(*alloc_, bytes, "attention staging");
  DeviceBuffer scratch(*alloc_,
                       kernels::cuda::attention_scratch_bytes(n_q, geo_.n_heads, geo_.head_dim,
                                                              kernels::cuda::kMaxAttentionSplits),
                       "attention scratch");
  DeviceBuffer pos = positions_of(*alloc_, q_pos0, n_q);
  check(cudaMemcpy(dq.get(), q, bytes, cudaMemcpyHostToDevice), "attention");
  attend_device(dq.get<float>(), n_q, pos.get<int32_t>(), n_tokens_, spec, dout.get<float>(), scratch.get(), nullptr);
  check(cudaMemcpy(out, dout.get(), bytes, cudaMemcpyDeviceToHost), "attention");
}

void KvLayerCuda::truncate(int64_t n) { n_tokens_ = std::min(n_tokens_, std::max<int64_t>(0, n)); }

uint64_t KvLayerCuda::bytes() const { return 2 * k_pages_.size() * page_bytes(geo_); }

}  // namespace lmlab::cuda
