// DeviceExpertCache: SSD -> VRAM expert streaming for the CUDA backend (--device cuda --stream-experts).
//
// A pool of expert slots in device memory shared by every MoE layer; a slot holds one expert's gate, up and down
// in their stored format, each matrix laid out as one element of DeviceWeights' stacked buffers. A layer's
// DeviceWeights view the pool with stride = slot size, so the gathered GEMV that takes expert ids over the
// resident stacks takes slot ids over the pool and computes the same sums (streamed logits equal the resident
// model's bit for bit). Expert biases (if any) live in one side pool per projection, `rows` floats per slot.
//
// A MoE step (load): the routed ids come to the host; experts already in a slot are hits; misses get the least
// recently used slots this step does not use, are read by the host ExpertStreamer (O_DIRECT into its host cache,
// so the SSD counters and /proc/self/io agree as on the CPU) and copied host -> VRAM with cudaMemcpyAsync on the
// compute stream, in the order their reads complete. The host cache's arena is registered (pinned) so the copies
// are DMA and overlap; a host expert stays pinned in the host cache until its copy has run: at most one is held while
// the next read is awaited (the oldest copy is waited for first), the last is released by finish(), called after the
// step's kernels are queued. Read-ahead: the next MoE layer's predicted experts not in VRAM are prefetched into
// the host cache (the streamer's prefetch) while this layer copies and computes.
//
// Size: --expert-cache-mb (the streamer's resolved budget) / slot bytes, raised to one layer's experts when smaller
// (a prefill chunk may route to every expert of a layer, and a step never evicts what it uses): clamped, not an error.
// Not synchronised (counters() aside): the CUDA backend serialises forwards.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <span>
#include <string>
#include <vector>

#include "config/model_spec.h"
#include "cuda/device_allocator.h"
#include "cuda/device_weights.h"
#include "cuda/kernels/kernels_cuda.h"
#include "experts/expert_streamer.h"

namespace lmlab::cuda {

// A MoE layer's experts as stacked DeviceWeights over the slot pool: index = slot id.
struct DeviceExpertWeights {
  kernels::cuda::DeviceWeight gate, up, down;
};

struct DeviceExpertCounters {
  uint64_t hits = 0, misses = 0;  // per distinct expert a step routes to (like the host cache's)
  uint64_t bytes = 0;             // the slot pool (and bias pools)
  int slots = 0;
};

class DeviceExpertCache {
 public:
  // Slot layout from every MoE layer's format (probed over a zeroed buffer: nothing is read), the pool from the
  // streamer's budget, and the streamer's host cache pinned.
  DeviceExpertCache(DeviceAllocator& alloc, ExpertStreamer& streamer, const ModelSpec& spec);
  ~DeviceExpertCache();
  DeviceExpertCache(const DeviceExpertCache&) = delete;
  DeviceExpertCache& operator=(const DeviceExpertCache&) = delete;

  const DeviceExpertWeights& layer_weights(int32_t layer) const;

  // One MoE step of model layer `layer`: chosen [n] routed expert ids (a token's top-k, any order, repeats allowed).
  // Makes every distinct one resident (copies queued on `stream`) and sets slot_ids[i] to chosen[i]'s slot.
  // next_layer >= 0: read ahead `predicted` (that layer's guessed experts) into the host cache. Call finish()
  // once the kernels reading the slots are queued.
  void load(int32_t layer, std::span<const int32_t> chosen, int32_t next_layer, std::span<const int32_t> predicted,
            std::vector<int32_t>& slot_ids, cudaStream_t stream);
  // Waits for this step's copies and releases their host experts.
  void finish();
  // After an error between load() and finish(): waits for the stream, releases, and forgets this step's slots.
  void abandon(cudaStream_t stream);

  DeviceExpertCounters counters() const;
  // One line for `lmlab info`'s device plan.
  std::string describe() const;

 private:
  struct Held {
    ExpertHandle expert;
    cudaEvent_t copied;
  };
  struct ProjLayout {
    uint64_t weight = 0, scales = 0, biases = 0;  // offsets in a slot
  };
  int64_t key(int32_t m, int32_t expert) const { return static_cast<int64_t>(m) * n_experts_ + expert; }
  void touch(int slot);                                 // used by this step: to the back of the LRU order
  int take_slot();                                      // free, else least recently used outside this step
  void copy_in(const ExpertHandle& h, int slot, cudaStream_t stream);
  void release_oldest();                                // waits for the oldest held expert's copy
  void forget_step();                                   // drop the mappings made this step (their bytes are unsure)
  cudaEvent_t new_event();

  DeviceAllocator& alloc_;
  ExpertStreamer& streamer_;
  int64_t n_experts_ = 0;
  uint64_t slot_bytes_ = 0;
  int n_slots_ = 0;
  bool clamped_ = false;  // the budget held fewer slots than one layer's experts
  bool pinned_ = false;   // the host cache's arena is registered with CUDA
  std::string pin_error_;
  std::span<uint8_t> host_arena_;
  DeviceBuffer pool_;
  DeviceBuffer bias_pool_[3];                    // per projection, [n_slots, rows] floats; null without biases
  std::vector<std::array<ProjLayout, 3>> proj_;  // per MoE layer (model order of ExpertLayout::moe_layers)
  std::vector<std::array<StoredFormat, 3>> formats_;  // per MoE layer: what every expert of it must be
  std::vector<DeviceExpertWeights> weights_;     // per MoE layer
  std::vector<int32_t> slot_of_;                 // [n_moe_layers * n_experts] -> slot or -1
  std::vector<int64_t> key_of_slot_;             // [n_slots] -> key or -1
  std::vector<uint64_t> last_use_;               // [n_slots] step of the last use
  std::list<int> lru_;                           // slots, least recently used first (free ones first of all)
  std::vector<std::list<int>::iterator> lru_pos_;  // [n_slots]
  std::vector<uint64_t> seen_;                   // [n_experts] step at which this step met the expert
  std::vector<int> assigned_;                    // slots this step filled (forgotten on failure)
  std::vector<int32_t> misses_, prefetch_;
  std::deque<Held> held_;
  std::vector<cudaEvent_t> free_events_;
  uint64_t step_ = 0;
  std::atomic<uint64_t> hits_{0}, misses_total_{0};  // read by counters() while a forward runs
};

}  // namespace lmlab::cuda
