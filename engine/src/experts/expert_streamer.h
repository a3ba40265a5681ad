// ExpertStreamer: MoE experts read from the shard files on demand (O_DIRECT, many reads in flight) into a
// budgeted ExpertCache, with read-ahead of predicted experts. The narrow API moe_block uses:
//
//   ExpertBatch batch = streamer.request(layer, chosen);   // every miss of the layer in flight at once
//   streamer.prefetch(next_layer, predicted);               // optional read-ahead (never blocks)
//   while (ExpertHandle h = batch.next()) {                 // experts in the order their reads complete
//     run_expert(h.weights(), ...);                         // pinned (never evicted) while h lives
//   }
//
// Thread-safe: sessions may stream concurrently. A thread should hold at most one handle while it waits in
// next()/acquire() for another, unless the cache has a slot for each handle held plus one.
// Hits and misses are counted per distinct expert a request names (a prefill chunk names each expert once).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "experts/cache_policy.h"
#include "experts/direct_reader.h"
#include "experts/expert_cache.h"
#include "experts/expert_layout.h"
#include "lmlab/error.h"
#include "lmlab/stream_counters.h"

namespace lmlab {

struct ExpertStreamerOptions {
  // The ModelOptions of the same names (option table), in bytes and enums.
  uint64_t expert_cache_bytes = 0;        // 0 = resolve_expert_cache_bytes's default; must hold one expert
  int expert_queue_depth = 8;             // reads in flight at most
  bool expert_predict_next = true;        // the caller's cue to call prefetch() for the next MoE layer
  CachePolicyKind expert_cache_policy = CachePolicyKind::reuse;
  bool use_uring = true;                  // io_uring when built with liburing, else worker threads
  CachePolicyOptions policy_options{};    // top_k 0 = the model's
  uint64_t read_chunk_bytes = 512 << 10;  // larger aligned reads are split, so one expert fills the queue
  bool force_buffered = false;            // tests: act as if O_DIRECT were refused
};

class ExpertStreamer;

// A loaded expert, pinned in the cache until release() or destruction. Move-only.
class ExpertHandle {
 public:
  ExpertHandle() = default;
  ExpertHandle(ExpertHandle&& o) noexcept : s_(o.s_), e_(o.e_) { o.s_ = nullptr, o.e_ = nullptr; }
  ExpertHandle& operator=(ExpertHandle&& o) noexcept;
  ~ExpertHandle() { release(); }

  explicit operator bool() const { return e_ != nullptr; }
  const ExpertWeights& weights() const { return e_->weights; }
  int32_t layer() const { return e_->layer; }
  int32_t expert() const { return e_->expert; }
  // The expert's buffer; tensor t of location() starts at data() + t.buffer_offset.
  const uint8_t* data() const { return e_->data; }
  const ExpertLocation& location() const;
  void release();

 private:
  friend class ExpertStreamer;
  friend class ExpertBatch;
  ExpertHandle(ExpertStreamer* s, ExpertEntry* e) : s_(s), e_(e) {}
  ExpertStreamer* s_ = nullptr;
  ExpertEntry* e_ = nullptr;
};

// The experts one request named, handed out as their reads complete. Destroying it drops the claims on
// experts not taken (their reads finish and stay cached, or are cancelled if not yet issued). Move-only.
class ExpertBatch {
 public:
  ExpertBatch() = default;
  ExpertBatch(ExpertBatch&& o) noexcept;
  ExpertBatch& operator=(ExpertBatch&& o) noexcept;
  ~ExpertBatch();

  // The next expert of the batch that is ready (waits if none is); an empty handle when all were taken.
  // Throws Error(io) naming the file when an expert's read failed (a later request retries it).
  ExpertHandle next();
  const std::vector<int32_t>& experts() const { return experts_; }  // distinct, in the order asked
  int32_t layer() const { return layer_; }
  size_t remaining() const;

 private:
  friend class ExpertStreamer;
  void drop();
  ExpertStreamer* s_ = nullptr;
  int32_t layer_ = 0;
  std::vector<int32_t> experts_;
  std::vector<char> taken_;
};

class ExpertStreamer {
 public:
  // Locates the experts (headers only; no expert byte is read) and opens the files for direct reads.
  ExpertStreamer(const WeightStore& store, const ModelSpec& spec, const ExpertStreamerOptions& options);
  ~ExpertStreamer();
  ExpertStreamer(const ExpertStreamer&) = delete;
  ExpertStreamer& operator=(const ExpertStreamer&) = delete;

  // A router chose `experts` (any order, repeats allowed: e.g. a chunk's [n_tokens * top_k] ids) for model
  // layer `layer`: counts hits and misses, puts every miss in flight (as far as the budget allows; the rest
  // follow as slots free up) and returns the batch to take them from.
  [[nodiscard]] ExpertBatch request(int32_t layer, std::span<const int32_t> experts);
  // Read-ahead of predicted experts: reads those not cached if a slot is free or the policy would rather
  // evict something else; never waits, never counts as a hit or miss, never delays a request.
  void prefetch(int32_t layer, std::span<const int32_t> experts);
  // One expert, waiting for its read (issued now when it is not cached or requested). Does not count a
  // hit or miss when a request already named it.
  ExpertHandle acquire(int32_t layer, int32_t expert);

  StreamCounters counters() const;
  const ExpertLayout& layout() const { return layout_; }
  const ExpertStreamerOptions& options() const { return options_; }
  ReadMode read_mode() const { return reader_.mode(); }
  const std::string& read_mode_reason() const { return reader_.mode_reason(); }
  std::string_view io_backend() const { return reader_.backend_name(); }
  const std::string& io_backend_reason() const { return reader_.backend_reason(); }
  uint64_t cache_budget_bytes() const { return cache_.budget_bytes(); }
  int cache_slots() const { return cache_.n_slots(); }
  std::span<uint8_t> cache_arena() const { return cache_.arena(); }  // fixed for the streamer's life
  // The MoE layer after `layer` (the one to predict for), or -1.
  int32_t next_moe_layer(int32_t layer) const;

 private:
  friend class ExpertHandle;
  friend class ExpertBatch;
  using Lock = std::unique_lock<std::mutex>;
  std::vector<int32_t> distinct(int32_t layer, std::span<const int32_t> experts) const;
  ExpertEntry& demand(int32_t layer, int32_t expert);  // a queued entry (new, or reset after a failure)
  void pump();                                         // issue queued entries that can get a slot
  void issue(ExpertEntry& e);
  void on_read_done(ExpertEntry* e, int err);
  void fail_if_needed(const ExpertEntry& e) const;    // throws for a failed entry
  Error read_error(const ExpertEntry& e) const;
  void release(ExpertEntry* e);
  void drop_claim(int32_t layer, int32_t expert);

  ExpertLayout layout_;             // built once per streamer (before options_: the budget default needs it)
  ExpertStreamerOptions options_;
  DirectReader reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  ExpertCache cache_;
  std::deque<ExpertEntry*> queued_;  // entries waiting for a slot, oldest first
  int loading_ = 0;                  // entries with reads in flight
  int waiting_ = 0;                  // threads blocked in next()/acquire()
  uint64_t hits_ = 0, misses_ = 0, prefetches_ = 0, prefetch_used_ = 0;
};

}  // namespace lmlab
