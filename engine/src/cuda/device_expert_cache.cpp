// The VRAM expert cache of --device cuda --stream-experts (see the header).
#include "cuda/device_expert_cache.h"


#include <fmt/format.h>

#include <algorithm>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab::cuda {

namespace {
constexpr uint64_t kAlign = 256;  // every matrix part starts 256-byte aligned, like a cudaMalloc'd stack
uint64_t align_up(uint64_t b) { return (b + kAlign - 1) / kAlign * kAlign; }
}  // namespace

DeviceExpertCache::DeviceExpertCache(DeviceAllocator& alloc, ExpertStreamer& streamer, const ModelSpec& spec)
    : alloc_(alloc), streamer_(streamer), n_experts_(streamer.layout().n_experts()) {
  const ExpertLayout& lay = streamer.layout();
  const int64_t n_moe = lay.n_moe_layers();
  if (n_moe == 0 || n_experts_ <= 0 || n_experts_ != spec.n_experts)
    throw Error(ErrorKind::internal, std::string(option_flag("stream_experts")), "no experts to stream on the GPU");
  // Each MoE layer's format, from its expert 0's Linears over a zeroed buffer (the views are never read): the
  // very Linears a read produces, so the slot layout and the per-read checks agree with what copy_in gets.
  int64_t bias_rows[3] = {-1, -1, -1};
  for (int64_t m = 0; m < n_moe; ++m) {
    const ExpertLocation& loc = lay.at(lay.moe_layers()[m], 0);
    std::vector<uint8_t> zeros(loc.buffer_bytes);
    const ExpertWeights probe = make_expert_weights(loc, zeros.data(), lay.files());
    const Linear* lins[3] = {probe.gate.get(), probe.up.get(), probe.down.get()};
    std::array<StoredFormat, 3> f;
    std::array<ProjLayout, 3> pl;
    uint64_t off = 0;
    for (int p = 0; p < 3; ++p) {
      f[p] = stored_format(*lins[p]);
      pl[p].weight = off;
      off = align_up(off + f[p].weight_bytes);
      if (f[p].w.affine) {
        pl[p].scales = off;
        off = align_up(off + f[p].scale_bytes);
        pl[p].biases = off;
        off = align_up(off + f[p].scale_bytes);
      }
      if (f[p].has_bias) {  // one side pool per projection, indexed by slot: every layer's rows must agree
        if (bias_rows[p] >= 0 && bias_rows[p] != f[p].w.rows)
          throw Error(ErrorKind::unsupported, fmt::format("layer {} experts", lay.moe_layers()[m]),
                      "expert biases of different sizes across layers cannot be streamed to the GPU");
        bias_rows[p] = f[p].w.rows;
      }
    }
    slot_bytes_ = std::max(slot_bytes_, off);
    formats_.push_back(f);
    proj_.push_back(pl);
  }

  const uint64_t all = static_cast<uint64_t>(n_moe * n_experts_);
  uint64_t n = streamer.cache_budget_bytes() / slot_bytes_;
  if (n < static_cast<uint64_t>(n_experts_)) n = static_cast<uint64_t>(n_experts_), clamped_ = true;
  n = std::min(n, all);
  n_slots_ = static_cast<int>(n);
  pool_ = DeviceBuffer(alloc, n * slot_bytes_, "expert cache slots");
  for (int p = 0; p < 3; ++p)
    if (bias_rows[p] >= 0) bias_pool_[p] = DeviceBuffer(alloc, n * bias_rows[p] * sizeof(float), "expert cache biases");

  const uint8_t* base = pool_.get<uint8_t>();
  for (int64_t m = 0; m < n_moe; ++m) {
    kernels::cuda::DeviceWeight* out[3];
    DeviceExpertWeights& dw = weights_.emplace_back();
    out[0] = &dw.gate, out[1] = &dw.up, out[2] = &dw.down;
    for (int p = 0; p < 3; ++p) {
      kernels::cuda::DeviceWeight w = formats_[m][p].w;
      const ProjLayout& pl = proj_[m][p];
      if (w.affine) {
        w.quant.packed = reinterpret_cast<const uint32_t*>(base + pl.weight);
        w.quant.scales = base + pl.scales;
        w.quant.biases = base + pl.biases;
        w.stride_s = slot_bytes_;
      } else {
        w.dense = base + pl.weight;
      }
      w.stride_w = slot_bytes_;
      w.bias = formats_[m][p].has_bias ? bias_pool_[p].get<float>() : nullptr;  // slot s at s * rows
      *out[p] = w;
    }
  }
  slot_of_.assign(static_cast<size_t>(all), -1);
  key_of_slot_.assign(static_cast<size_t>(n_slots_), -1);
  last_use_.assign(static_cast<size_t>(n_slots_), 0);
  seen_.assign(static_cast<size_t>(n_experts_), 0);
  for (int s = 0; s < n_slots_; ++s) lru_pos_.push_back(lru_.insert(lru_.end(), s));

  // Pin the host cache: copies from pageable memory go through a driver bounce buffer, synchronously.
  host_arena_ = streamer.cache_arena();
  const cudaError_t e = cudaHostRegister(host_arena_.data(), host_arena_.size(), cudaHostRegisterDefault);
  if (e == cudaSuccess) {
    pinned_ = true;
  } else {
    (void)cudaGetLastError();
    pin_error_ = cudaGetErrorString(e);
  }
}

DeviceExpertCache::~DeviceExpertCache() {
  for (Held& h : held_) {
    cudaEventSynchronize(h.copied);  // the host bytes may still be read by a copy
    cudaEventDestroy(h.copied);
  }
  held_.clear();
  for (cudaEvent_t ev : free_events_) cudaEventDestroy(ev);
  if (pinned_) cudaHostUnregister(host_arena_.data());
}

const DeviceExpertWeights& DeviceExpertCache::layer_weights(int32_t layer) const {
  const int32_t m = streamer_.layout().moe_index(layer);
  if (m < 0) throw Error(ErrorKind::internal, fmt::format("layer {}", layer), "is not a MoE layer");
  return weights_[static_cast<size_t>(m)];
}

void DeviceExpertCache::touch(int slot) {
  last_use_[slot] = step_;
  lru_.splice(lru_.end(), lru_, lru_pos_[slot]);
}

int DeviceExpertCache::take_slot() {
  // Free slots sit at the front, then the least recently used. Every slot this step uses was touched before the
  // first miss takes one, and a step uses at most n_experts <= n_slots of them, so the front is never one of them.
  const int s = lru_.front();
  if (last_use_[s] == step_ && key_of_slot_[s] >= 0)
    throw Error(ErrorKind::internal, "expert cache", "a step needs more slots than the VRAM cache has");
  if (key_of_slot_[s] >= 0) slot_of_[static_cast<size_t>(key_of_slot_[s])] = -1;
  touch(s);
  return s;
}

void DeviceExpertCache::load(int32_t layer, std::span<const int32_t> chosen, int32_t next_layer,
                             std::span<const int32_t> predicted, std::vector<int32_t>& slot_ids, cudaStream_t stream) {
  const ExpertLayout& lay = streamer_.layout();
  const int32_t m = lay.moe_index(layer);
  if (m < 0) throw Error(ErrorKind::internal, fmt::format("layer {}", layer), "is not a MoE layer");
  finish();  // a step left unfinished by an error elsewhere
  ++step_;
  assigned_.clear();
  misses_.clear();
  try {
    for (int32_t e : chosen) {
      if (e < 0 || e >= n_experts_)
        throw Error(ErrorKind::internal, fmt::format("layer {}", layer), fmt::format("routed expert id {} out of range", e));
      if (seen_[e] == step_) continue;  // counted once per step, as the host cache counts
      seen_[e] = step_;
      if (const int s = slot_of_[static_cast<size_t>(key(m, e))]; s >= 0) {
        touch(s);
        hits_.fetch_add(1, std::memory_order_relaxed);
      } else {
        misses_.push_back(e);
      }
    }
    // Every hit is touched before the first miss takes a slot, so no miss evicts an expert this step uses.
    for (int32_t e : misses_) {
      const int s = take_slot();
      key_of_slot_[s] = key(m, e);
      slot_of_[static_cast<size_t>(key(m, e))] = s;
      assigned_.push_back(s);
    }
    misses_total_.fetch_add(misses_.size(), std::memory_order_relaxed);
    slot_ids.resize(chosen.size());
    for (size_t i = 0; i < chosen.size(); ++i) slot_ids[i] = slot_of_[static_cast<size_t>(key(m, chosen[i]))];

    ExpertBatch batch;  // empty: next() returns no handle
    if (!misses_.empty()) batch = streamer_.request(layer, misses_);
    // Read-ahead into the host cache of the next layer's guesses that VRAM does not hold.
    if (next_layer >= 0) {
      const int32_t mn = lay.moe_index(next_layer);
      prefetch_.clear();
      for (int32_t e : predicted)
        if (mn >= 0 && e >= 0 && e < n_experts_ && slot_of_[static_cast<size_t>(key(mn, e))] < 0) prefetch_.push_back(e);
      if (!prefetch_.empty()) streamer_.prefetch(next_layer, prefetch_);
    }
    // Misses in the order their reads complete, holding at most one host expert while waiting for the next (the
    // streamer's contract). Holding up to "host slots - 1", which the contract's exception allows, hung on the
    // H200 with a 9-slot host cache (8 held, the caller waiting in next(), the I/O thread waiting for completions;
    // 2026-12-04, not diagnosed further; holding 1 passed): each further expert now waits for the oldest copy,
    // which is queued behind this stream's earlier kernels. The host streamer alone keeps the contract with 8 held
    // of 9 slots, across layers, with read-ahead (ExpertStreamCache.HoldingSlotsMinusOneWhileWaitingDoesNotStall,
    // on the CPU): the hang needs something of this side (the registered arena, the events) to reproduce.
    const size_t max_held = 1;
    for (;;) {
      while (held_.size() > max_held) release_oldest();
      ExpertHandle h = batch.next();
      if (!h) break;
      copy_in(h, slot_of_[static_cast<size_t>(key(m, h.expert()))], stream);
      cudaEvent_t ev = new_event();
      held_.push_back({std::move(h), ev});  // held before the record can fail: abandon() waits for the stream
      check(cudaEventRecord(ev, stream), "expert copy event");
    }
  } catch (...) {
    abandon(stream);
    throw;
  }
}

void DeviceExpertCache::copy_in(const ExpertHandle& h, int slot, cudaStream_t stream) {
  const int32_t m = streamer_.layout().moe_index(h.layer());
  const ExpertWeights& ew = h.weights();
  const Linear* lins[3] = {ew.gate.get(), ew.up.get(), ew.down.get()};
  for (int p = 0; p < 3; ++p)  // all three checked before any copy is queued
    if (!same_stored_format(stored_format(*lins[p]), formats_[m][p]))
      throw Error(ErrorKind::unsupported, fmt::format("layer {} expert {}", h.layer(), h.expert()),
                  "is stored unlike expert 0 of its layer (the VRAM cache holds one format per layer)");
  uint8_t* base = pool_.get<uint8_t>() + static_cast<uint64_t>(slot) * slot_bytes_;
  for (int p = 0; p < 3; ++p) {
    const StoredFormat& f = formats_[m][p];
    const ProjLayout& pl = proj_[m][p];
    copy_stored(*lins[p], f, base + pl.weight, f.w.affine ? base + pl.scales : nullptr,
                f.w.affine ? base + pl.biases : nullptr,
                f.has_bias ? bias_pool_[p].get<float>() + static_cast<int64_t>(slot) * f.w.rows : nullptr, stream);
  }
}

cudaEvent_t DeviceExpertCache::new_event() {
  if (!free_events_.empty()) {
    cudaEvent_t ev = free_events_.back();
    free_events_.pop_back();
    return ev;
  }
  cudaEvent_t ev = nullptr;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "expert copy event");
  return ev;
}

void DeviceExpertCache::release_oldest() {
  Held h = std::move(held_.front());
  held_.pop_front();
  const cudaError_t e = cudaEventSynchronize(h.copied);
  free_events_.push_back(h.copied);
  check(e, "expert copy");
  // h.expert is released here: its copy has run, the host cache may reuse its slot
}

void DeviceExpertCache::finish() {
  if (held_.empty()) return;
  const cudaError_t e = cudaEventSynchronize(held_.back().copied);  // one stream: the earlier copies ran too
  for (Held& h : held_) free_events_.push_back(h.copied);
  held_.clear();
  if (e != cudaSuccess) {
    forget_step();
    throw_cuda(e, "expert copy");
  }
}

void DeviceExpertCache::abandon(cudaStream_t stream) {
  (void)cudaStreamSynchronize(stream);  // no copy may still read a host expert we release
  for (Held& h : held_) free_events_.push_back(h.copied);
  held_.clear();
  (void)cudaGetLastError();
  forget_step();
}

void DeviceExpertCache::forget_step() {
  for (int s : assigned_) {
    if (key_of_slot_[s] >= 0) slot_of_[static_cast<size_t>(key_of_slot_[s])] = -1;
    key_of_slot_[s] = -1;
    lru_.splice(lru_.begin(), lru_, lru_pos_[s]);  // free: taken first
  }
  assigned_.clear();
}

DeviceExpertCounters DeviceExpertCache::counters() const {
  DeviceExpertCounters c;
  c.hits = hits_.load(std::memory_order_relaxed);
  c.misses = misses_total_.load(std::memory_order_relaxed);
  c.bytes = pool_.bytes() + bias_pool_[0].bytes() + bias_pool_[1].bytes() + bias_pool_[2].bytes();
  c.slots = n_slots_;
  return c;
}

std::string DeviceExpertCache::describe() const {
  std::string s = fmt::format("streamed experts: VRAM cache of {} slots x {:.2f} MiB = {:.1f} MiB", n_slots_,
                              slot_bytes_ / 1048576.0, counters().bytes / 1048576.0);
  if (clamped_)
    s += fmt::format(" (raised from the {} budget of {:.1f} MiB to one layer's {} experts)",
                     option_flag("expert_cache_mb"), streamer_.cache_budget_bytes() / 1048576.0, n_experts_);
  s += fmt::format("; host cache {:.1f} MiB {}", host_arena_.size() / 1048576.0,
                   pinned_ ? "pinned" : "pageable (cudaHostRegister: " + pin_error_ + ")");
  return s;
}

}  // namespace lmlab::cuda
