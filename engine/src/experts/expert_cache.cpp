// ExpertCache: slot arena, entries, policy-driven eviction; and the Linears of a loaded expert.
#include "experts/expert_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <limits>

#include "lmlab/error.h"
#include "lmlab/options.h"
#include "weights/linear_view.h"

namespace lmlab {

namespace {
#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;  // Linux 5.14
#endif
}  // namespace

ExpertWeights make_expert_weights(const ExpertLocation& loc, const uint8_t* buffer,
                                  const std::vector<std::filesystem::path>& files) {
  auto view = [&](ExpertProj p, ExpertTensorRole r) {
    TensorView v;
    const ExpertTensor* t = loc.find(p, r);
    if (!t) return v;
    v.data = buffer + t->buffer_offset;
    v.dtype = t->dtype;
    v.shape = t->shape;
    v.where = fmt::format("{}: tensor '{}'{}", files.at(t->file).string(), t->name,
                          loc.stacked ? fmt::format(" (expert {})", loc.expert) : "");
    return v;
  };
  auto linear = [&](ExpertProj p) {
    const int i = static_cast<int>(p);
    LinearView lv{view(p, ExpertTensorRole::weight), view(p, ExpertTensorRole::scales),
                  view(p, ExpertTensorRole::biases), view(p, ExpertTensorRole::bias)};
    return make_linear_from_bytes(lv, loc.out[i], loc.in[i], loc.quant[i]);
  };
  return {linear(ExpertProj::gate), linear(ExpertProj::up), linear(ExpertProj::down)};
}

ExpertCache::ExpertCache(const ExpertLayout& layout, uint64_t budget_bytes, CachePolicyKind policy,
                         const CachePolicyOptions& policy_options)
    : layout_(layout), budget_bytes_(budget_bytes), slot_bytes_(layout.max_buffer_bytes()) {
  if (slot_bytes_ == 0)
    throw Error(ErrorKind::invalid_input, std::string(option_flag("stream_experts")),
                "the model has no MoE experts to stream");
  const uint64_t n = budget_bytes / slot_bytes_;
  if (n == 0)
    throw Error(ErrorKind::invalid_input, std::string(option_flag("expert_cache_mb")),
                fmt::format("an expert cache of {:.2f} MB cannot hold one expert ({:.2f} MB)", budget_bytes / 1e6,
                            slot_bytes_ / 1e6));
  const uint64_t all = static_cast<uint64_t>(layout.all().size());
  n_slots_ = static_cast<int>(std::min<uint64_t>({n, all, static_cast<uint64_t>(std::numeric_limits<int>::max())}));
  arena_bytes_ = static_cast<uint64_t>(n_slots_) * slot_bytes_;
  void* p = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw Error(ErrorKind::out_of_memory, std::string(option_flag("expert_cache_mb")),
                fmt::format("cannot reserve {} bytes for the expert cache: {}", arena_bytes_, std::strerror(errno)));
  arena_ = static_cast<uint8_t*>(p);
  for (int s = n_slots_ - 1; s >= 0; --s) free_.push_back(s);
  owner_.assign(static_cast<size_t>(n_slots_), nullptr);
  entries_.resize(layout.all().size());
  policy_ = make_cache_policy(policy, layout.n_moe_layers(), layout.n_experts(), policy_options);
  // Fault the slots in, in the order they are handed out, off the read path: an O_DIRECT read into memory
  // never touched pays for the page faults inside the submission (measured: cold reads 2-4x slower).
  // MADV_POPULATE_WRITE maps pages without writing them, so racing a read already landing in a slot is
  // harmless. Kernels before 5.14 refuse it: then pages fault in on first use, as before.
  try {
    prefault_ = std::thread([this] {
      for (int s = 0; s < n_slots_ && !stop_prefault_.load(std::memory_order_relaxed); ++s)
        if (::madvise(arena_ + static_cast<uint64_t>(s) * slot_bytes_, slot_bytes_, kMadvPopulateWrite) != 0) return;
    });
  } catch (const std::system_error&) {
    // No thread to spare: the pages fault in on first use instead.
  }
}

ExpertCache::~ExpertCache() {
  stop_prefault_ = true;
  if (prefault_.joinable()) prefault_.join();
  if (arena_) ::munmap(arena_, arena_bytes_);
}

ExpertEntry* ExpertCache::find(int32_t layer, int32_t expert) {
  const int32_t m = layout_.moe_index(layer);
  if (m < 0 || expert < 0 || expert >= layout_.n_experts()) layout_.at(layer, expert);  // throws, naming both
  return entries_[static_cast<size_t>(m) * layout_.n_experts() + expert].get();
}

ExpertEntry& ExpertCache::emplace(int32_t layer, int32_t expert) {
  const int32_t m = layout_.moe_index(layer);
  auto& slot = entries_[static_cast<size_t>(m) * layout_.n_experts() + expert];
  slot = std::make_unique<ExpertEntry>();
  slot->layer = layer;
  slot->expert = expert;
  slot->m = m;
  return *slot;
}

void ExpertCache::release_slot(ExpertEntry& e) {
  if (e.slot < 0) return;
  owner_[e.slot] = nullptr;
  free_.push_back(e.slot);
  e.slot = -1;
  e.data = nullptr;
}

void ExpertCache::erase(ExpertEntry& e) {
  release_slot(e);
  entries_[static_cast<size_t>(e.m) * layout_.n_experts() + e.expert].reset();
}

const ExpertEntry* ExpertCache::victim(const std::function<bool(const ExpertEntry&)>& evictable) const {
  if (!free_.empty()) return nullptr;
  const ExpertEntry* best = nullptr;
  double best_score = -std::numeric_limits<double>::infinity();
  for (const ExpertEntry* o : owner_) {
    if (!o || o->state != ExpertEntry::State::ready || o->pins > 0 || o->waiters > 0 || !evictable(*o)) continue;
    const double s = policy_->eviction_score(o->m, o->expert);
    if (!best || s > best_score) best = o, best_score = s;
  }
  return best;
}

bool ExpertCache::assign_slot(ExpertEntry& e, const std::function<bool(const ExpertEntry&)>& evictable) {
  if (free_.empty()) {
    const ExpertEntry* v = victim(evictable);
    if (!v) return false;
    ++evictions_;
    erase(*const_cast<ExpertEntry*>(v));
  }
  e.slot = free_.back();
  free_.pop_back();
  owner_[e.slot] = &e;
  e.data = arena_ + static_cast<uint64_t>(e.slot) * slot_bytes_;
  return true;
}

}  // namespace lmlab
