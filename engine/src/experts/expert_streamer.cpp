// ExpertStreamer: requests, read-ahead, waits and the entry state machine
//   absent -> queued (claimed, no slot) -> loading (slot, reads in flight) -> ready -> evicted (absent)
//                                                  \-> failed (slot freed; a later request retries)
// One mutex guards the cache and every entry; read completions arrive on I/O threads and take it briefly.
#include "experts/expert_streamer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "experts/expert_cache_budget.h"
#include "lmlab/error.h"

namespace lmlab {

using State = ExpertEntry::State;

// ---- ExpertHandle / ExpertBatch --------------------------------------------------------------------------

ExpertHandle& ExpertHandle::operator=(ExpertHandle&& o) noexcept {
  if (this != &o) {
    release();
    s_ = o.s_, e_ = o.e_;
    o.s_ = nullptr, o.e_ = nullptr;
  }
  return *this;
}

const ExpertLocation& ExpertHandle::location() const { return s_->layout_.at(e_->layer, e_->expert); }

void ExpertHandle::release() {
  if (e_) s_->release(e_);
  s_ = nullptr, e_ = nullptr;
}

ExpertBatch::ExpertBatch(ExpertBatch&& o) noexcept
    : s_(o.s_), layer_(o.layer_), experts_(std::move(o.experts_)), taken_(std::move(o.taken_)) {
  o.s_ = nullptr;
}

ExpertBatch& ExpertBatch::operator=(ExpertBatch&& o) noexcept {
  if (this != &o) {
    drop();
    s_ = o.s_, layer_ = o.layer_, experts_ = std::move(o.experts_), taken_ = std::move(o.taken_);
    o.s_ = nullptr;
  }
  return *this;
}

ExpertBatch::~ExpertBatch() { drop(); }

void ExpertBatch::drop() {
  if (!s_) return;
  for (size_t i = 0; i < experts_.size(); ++i)
    if (!taken_[i]) s_->drop_claim(layer_, experts_[i]);
  s_ = nullptr;
}

size_t ExpertBatch::remaining() const { return static_cast<size_t>(std::count(taken_.begin(), taken_.end(), 0)); }

ExpertHandle ExpertBatch::next() {
  if (!s_) return {};
  ExpertStreamer& s = *s_;
  ExpertStreamer::Lock lk(s.mu_);
  for (;;) {
    bool left = false;
    for (size_t i = 0; i < experts_.size(); ++i) {
      if (taken_[i]) continue;
      ExpertEntry* e = s.cache_.find(layer_, experts_[i]);
      if (!e) {  // evicted to break a stall: ask again
        ExpertEntry& ne = s.demand(layer_, experts_[i]);
        ne.wanted++;
        s.pump();
        left = true;
        continue;
      }
      if (e->state == State::failed) {
        taken_[i] = 1;
        if (e->wanted > 0) e->wanted--;
        s.fail_if_needed(*e);
      }
      if (e->state == State::ready) {
        taken_[i] = 1;
        if (e->wanted > 0) e->wanted--;
        e->pins++;
        return ExpertHandle(&s, e);
      }
      left = true;
    }
    if (!left) return {};
    s.waiting_++;
    s.pump();
    s.cv_.wait(lk);
    s.waiting_--;
  }
}

// ---- ExpertStreamer --------------------------------------------------------------------------------------

namespace {
ExpertStreamerOptions with_defaults(ExpertStreamerOptions o, const ModelSpec& spec, const ExpertLayout& layout) {
  o.expert_cache_bytes = resolve_expert_cache_bytes(o.expert_cache_bytes, layout);
  if (o.policy_options.top_k <= 0) o.policy_options.top_k = std::max<int64_t>(1, spec.top_k);
  o.read_chunk_bytes = std::max<uint64_t>(DirectReader::kAlignment,
                                          o.read_chunk_bytes / DirectReader::kAlignment * DirectReader::kAlignment);
  return o;
}
}  // namespace

ExpertStreamer::ExpertStreamer(const WeightStore& store, const ModelSpec& spec, const ExpertStreamerOptions& options)
    : layout_(ExpertLayout::build(store, spec)),
      options_(with_defaults(options, spec, layout_)),
      reader_(layout_.files(), {options_.expert_queue_depth, options_.use_uring, options_.force_buffered}),
      cache_(layout_, options_.expert_cache_bytes, options_.expert_cache_policy, options_.policy_options) {}

ExpertStreamer::~ExpertStreamer() {
  Lock lk(mu_);
  for (ExpertEntry* e : queued_) cache_.erase(*e);
  queued_.clear();
  cv_.wait(lk, [&] { return loading_ == 0; });  // completions touch the cache: let them land first
}

int32_t ExpertStreamer::next_moe_layer(int32_t layer) const {
  for (int32_t l : layout_.moe_layers())
    if (l > layer) return l;
  return -1;
}

std::vector<int32_t> ExpertStreamer::distinct(int32_t layer, std::span<const int32_t> experts) const {
  std::vector<int32_t> out;
  std::vector<char> seen(static_cast<size_t>(layout_.n_experts()), 0);
  for (int32_t e : experts) {
    layout_.at(layer, e);  // throws for a dense layer or an expert out of range
    if (!seen[e]) seen[e] = 1, out.push_back(e);
  }
  return out;
}

ExpertEntry& ExpertStreamer::demand(int32_t layer, int32_t expert) {
  ExpertEntry* e = cache_.find(layer, expert);
  if (!e) {
    e = &cache_.emplace(layer, expert);
    cache_.policy().on_insert(e->m, expert, false);
  }
  e->state = State::queued;
  e->error = 0;
  e->error_where.clear();
  e->error_message.clear();
  e->prefetched = false;
  queued_.push_back(e);
  return *e;
}

ExpertBatch ExpertStreamer::request(int32_t layer, std::span<const int32_t> experts) {
  ExpertBatch b;
  b.experts_ = distinct(layer, experts);
  b.taken_.assign(b.experts_.size(), 0);
  b.layer_ = layer;
  b.s_ = this;
  Lock lk(mu_);
  cache_.policy().on_request(layout_.moe_index(layer), b.experts_);
  for (int32_t x : b.experts_) {
    ExpertEntry* e = cache_.find(layer, x);
    if (!e || e->state == State::failed) {
      ++misses_;
      e = &demand(layer, x);
    } else {
      ++hits_;
      if (e->prefetched) ++prefetch_used_, e->prefetched = false;
    }
    e->wanted++;
  }
  pump();
  return b;
}

void ExpertStreamer::prefetch(int32_t layer, std::span<const int32_t> experts) {
  const std::vector<int32_t> xs = distinct(layer, experts);
  const int32_t m = layout_.moe_index(layer);
  Lock lk(mu_);
  for (int32_t x : xs) {
    if (!queued_.empty()) return;  // demand is waiting for slots: read-ahead would delay it
    if (cache_.find(layer, x)) continue;
    ExpertEntry& e = cache_.emplace(layer, x);
    e.prefetched = true;
    CachePolicy& p = cache_.policy();
    const bool ok = cache_.assign_slot(e, [&](const ExpertEntry& v) {
      return v.wanted == 0 && !v.prefetched && p.admit_prefetch(m, x, v.m, v.expert);
    });
    if (!ok) {
      cache_.erase(e);
      continue;
    }
    ++prefetches_;
    p.on_insert(m, x, true);
    issue(e);
  }
}

ExpertHandle ExpertStreamer::acquire(int32_t layer, int32_t expert) {
  layout_.at(layer, expert);
  Lock lk(mu_);
  ExpertEntry* e = cache_.find(layer, expert);
  if (!e || e->state == State::failed) {
    ++misses_;
    e = &demand(layer, expert);
  }
  e->waiters++;
  waiting_++;
  pump();
  cv_.wait(lk, [&] { return e->state == State::ready || e->state == State::failed; });
  waiting_--;
  e->waiters--;
  if (e->state == State::failed) {
    Error err = read_error(*e);
    if (e->wanted == 0 && e->waiters == 0 && e->pins == 0) cache_.erase(*e);
    throw err;
  }
  e->pins++;
  if (e->prefetched) e->prefetched = false;  // taken without a request: it served its purpose
  return ExpertHandle(this, e);
}

void ExpertStreamer::fail_if_needed(const ExpertEntry& e) const {
  if (e.state == State::failed) throw read_error(e);
}

Error ExpertStreamer::read_error(const ExpertEntry& e) const {
  const ExpertLocation& loc = layout_.at(e.layer, e.expert);
  if (!e.error_message.empty())
    return Error(ErrorKind::unsupported, e.error_where, e.error_message);
  return Error(ErrorKind::io, layout_.files().at(loc.reads.front().file).string(),
              fmt::format("reading layer {} expert {} failed: {}", e.layer, e.expert, std::strerror(e.error)));
}

void ExpertStreamer::pump() {
  while (!queued_.empty()) {
    ExpertEntry* e = queued_.front();
    bool ok = cache_.assign_slot(*e, [](const ExpertEntry& v) { return v.wanted == 0; });
    // Every slot holds an expert some batch still has to take, nothing is in flight, and a thread waits on
    // an expert that has no slot (it took its experts out of order): evict a claimed one, or it waits forever.
    if (!ok && waiting_ > 0 && loading_ == 0) ok = cache_.assign_slot(*e, [](const ExpertEntry&) { return true; });
    if (!ok) return;
    queued_.pop_front();
    issue(*e);
  }
}

void ExpertStreamer::issue(ExpertEntry& e) {
  const ExpertLocation& loc = layout_.at(e.layer, e.expert);
  std::vector<ReadOp> ops;
  const uint64_t chunk = options_.read_chunk_bytes;
  for (const ExpertRead& r : loc.reads) {
    const uint64_t need_end = r.offset + r.min_bytes;
    for (uint64_t off = 0; off < r.nbytes; off += chunk) {
      const uint64_t len = std::min(chunk, r.nbytes - off), at = r.offset + off;
      ops.push_back({r.file, at, len, std::min(len, need_end > at ? need_end - at : 0), e.data + r.buffer_offset + off});
    }
  }
  e.state = State::loading;
  e.reads_left = static_cast<int>(ops.size());
  ++loading_;
  for (const ReadOp& op : ops) reader_.submit(op, [this, p = &e](int err) { on_read_done(p, err); });
}

void ExpertStreamer::on_read_done(ExpertEntry* e, int err) {
  Lock lk(mu_);
  if (err && !e->error) e->error = err;
  if (--e->reads_left > 0) return;
  --loading_;
  if (!e->error) {
    try {
      e->weights = make_expert_weights(layout_.at(e->layer, e->expert), e->data, layout_.files());
    } catch (const Error& x) {
      e->error = ENOTSUP;  // a format the Linears cannot view (e.g. quantized before the affine Linear lands)
      e->error_where = x.where();
      e->error_message = x.message();
    }
  }
  if (e->error) {
    e->state = State::failed;
    cache_.release_slot(*e);
    if (e->wanted == 0 && e->waiters == 0 && e->pins == 0) cache_.erase(*e);  // a prefetch nobody waits for
  } else {
    e->state = State::ready;
  }
  cv_.notify_all();
  pump();
}

void ExpertStreamer::release(ExpertEntry* e) {
  Lock lk(mu_);
  e->pins--;
  if (e->pins == 0) pump();
}

void ExpertStreamer::drop_claim(int32_t layer, int32_t expert) {
  Lock lk(mu_);
  ExpertEntry* e = cache_.find(layer, expert);
  if (!e || e->wanted == 0) return;
  e->wanted--;
  if (e->wanted > 0 || e->waiters > 0 || e->pins > 0) return;
  if (e->state == State::queued) {  // never issued: cancel
    queued_.erase(std::find(queued_.begin(), queued_.end(), e));
    cache_.erase(*e);
    pump();
  } else if (e->state == State::failed) {
    cache_.erase(*e);
  } else {
    pump();
  }
}

StreamCounters ExpertStreamer::counters() const {
  const IoStats io = reader_.stats();
  StreamCounters c;
  c.ssd_bytes_read_total = io.bytes;
  c.ssd_reads_total = io.reads;
  c.ssd_read_seconds_total = io.busy_seconds;
  c.read_latency_counts = io.latency_counts;
  c.read_latency_seconds_sum = io.latency_seconds_sum;
  c.read_mode = std::string(read_mode_name(reader_.mode()));
  c.io_backend = std::string(reader_.backend_name());
  Lock lk(mu_);
  c.expert_cache_hits_total = hits_;
  c.expert_cache_misses_total = misses_;
  c.expert_cache_bytes = cache_.bytes();
  c.expert_cache_budget_bytes = cache_.budget_bytes();
  c.expert_cache_evictions_total = cache_.evictions();
  c.expert_prefetch_total = prefetches_;
  c.expert_prefetch_used_total = prefetch_used_;
  return c;
}

}  // namespace lmlab
