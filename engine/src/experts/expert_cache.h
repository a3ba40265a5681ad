// ExpertCache: the byte budget of streamed experts (--expert-cache-mb) as a fixed arena of equal slots, one
// expert (its three projections, weights + scales + biases) per slot, and the entries that own them.
// Slot size = the largest expert read plan, so the arena never fragments and cache bytes = slots in use *
// slot size <= budget at every moment. The arena is reserved once and faulted in by a background thread in
// the order slots are handed out; evicted slots are reused, so streaming allocates nothing and its reads
// take no page faults.
// Not synchronised: ExpertStreamer guards it with its mutex. The eviction order comes from a CachePolicy.
#pragma once

#include <cstdint>
#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "experts/cache_policy.h"
#include "experts/expert_layout.h"
#include "weights/linear.h"

namespace lmlab {

// The three Linears of one expert, viewing its cache slot.
struct ExpertWeights {
  std::unique_ptr<Linear> gate, up, down;  // [inter, hidden], [inter, hidden], [hidden, inter]
};

// Builds the Linears of `loc` over a buffer filled by its read plan.
ExpertWeights make_expert_weights(const ExpertLocation& loc, const uint8_t* buffer,
                                  const std::vector<std::filesystem::path>& files);

struct ExpertEntry {
  enum class State { queued, loading, ready, failed };
  int32_t layer = 0, expert = 0;  // model layer index, expert index
  int32_t m = 0;                  // position among the MoE layers
  State state = State::queued;    // queued: waiting for a slot (no bytes held)
  int slot = -1;
  uint8_t* data = nullptr;        // the slot's memory once assigned
  ExpertWeights weights;          // valid when ready
  int pins = 0;                   // handles held
  int wanted = 0;                 // batches that asked for it and have not taken it yet
  int waiters = 0;                // threads blocked on it
  int reads_left = 0;
  int error = 0;                  // errno of the first failed read (or ENOTSUP: the bytes make no Linear)
  std::string error_where, error_message;  // a Linear that could not be made over the bytes
  bool prefetched = false;        // read ahead and not asked for yet
};

class ExpertCache {
 public:
  // Throws invalid_input when budget_bytes cannot hold one expert.
  ExpertCache(const ExpertLayout& layout, uint64_t budget_bytes, CachePolicyKind policy,
              const CachePolicyOptions& policy_options);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  ExpertEntry* find(int32_t layer, int32_t expert);
  ExpertEntry& emplace(int32_t layer, int32_t expert);  // a new queued entry; must be absent
  void erase(ExpertEntry& e);                            // frees its slot; e is destroyed
  void release_slot(ExpertEntry& e);                     // frees its slot, keeps the entry (failed reads)

  // Gives e (queued) a slot: a free one, else evicts the entry with the highest policy score among those
  // `evictable` accepts (it is only offered ready entries nobody holds or waits for). False when neither exists.
  bool assign_slot(ExpertEntry& e, const std::function<bool(const ExpertEntry&)>& evictable);
  // The entry assign_slot would evict now (null when a slot is free or none is evictable).
  const ExpertEntry* victim(const std::function<bool(const ExpertEntry&)>& evictable) const;

  CachePolicy& policy() { return *policy_; }
  uint64_t slot_bytes() const { return slot_bytes_; }
  int n_slots() const { return n_slots_; }
  int free_slots() const { return static_cast<int>(free_.size()); }
  uint64_t bytes() const { return static_cast<uint64_t>(n_slots_ - free_slots()) * slot_bytes_; }
  uint64_t budget_bytes() const { return budget_bytes_; }
  uint64_t evictions() const { return evictions_; }
  // The slots' memory (device backends pin it so their host -> device copies are DMA).
  std::span<uint8_t> arena() const { return {arena_, arena_bytes_}; }

 private:
  const ExpertLayout& layout_;
  uint64_t budget_bytes_, slot_bytes_;
  int n_slots_;
  uint8_t* arena_ = nullptr;
  uint64_t arena_bytes_ = 0;
  std::vector<int> free_;
  std::vector<ExpertEntry*> owner_;                   // [n_slots]
  std::vector<std::unique_ptr<ExpertEntry>> entries_; // [n_moe_layers * n_experts]
  std::unique_ptr<CachePolicy> policy_;
  uint64_t evictions_ = 0;
  std::atomic<bool> stop_prefault_{false};
  std::thread prefault_;
};

}  // namespace lmlab
