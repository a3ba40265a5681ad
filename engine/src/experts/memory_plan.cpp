// plan_memory: strategy, byte budget and the bytes one decoded token touches, from config.json and the
// safetensors headers. The decode speed those bytes imply is the lab's arithmetic (results: estimate_decode).
#include "lmlab/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arch/registry.h"
#include "experts/expert_cache_budget.h"
#include "experts/expert_layout.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "lmlab/safetensors.h"
#include "config/context_size.h"

namespace lmlab {

uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t kb = 0;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

namespace {
std::string gb(uint64_t b) { return fmt::format("{:.2f} GB", static_cast<double>(b) / 1e9); }
}  // namespace

MemoryPlan plan_memory(const std::filesystem::path& model_dir, const MemoryPlanOptions& o) {
  const ModelSpec spec = load_model_spec(model_dir.string());
  const WeightStore store = WeightStore::open_dir(model_dir);
  const ExpertLayout layout = ExpertLayout::build(store, spec);
  MemoryPlan p;
  p.weight_bytes = 0;
  uint64_t embed_bytes = 0;
  for (const auto& name : store.names()) {
    const uint64_t n = store.find(name).info->nbytes;
    p.weight_bytes += n;
    if (name.rfind("model.embed_tokens.", 0) == 0) embed_bytes += n;
  }
  p.expert_bytes = layout.total_tensor_bytes();
  const bool moe = !layout.all().empty();
  const bool stream = o.stream_experts && moe;
  p.available_bytes = o.available_bytes ? o.available_bytes : mem_available_bytes();
  p.headroom_bytes = o.headroom_bytes;
  p.ctx_size = resolve_ctx_size(o.ctx_size, spec);
  if (p.ctx_size <= 0)
    throw Error(ErrorKind::invalid_input, std::string(option_flag("ctx_size")), "the model has no max_position_embeddings: give a context size");

  // KV: K and V rows of every layer, a sliding layer holding at most its window.
  const uint64_t row = static_cast<uint64_t>(spec.n_kv_heads * spec.head_dim) * o.kv_bytes_per_value;
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const int64_t w = l < static_cast<int64_t>(spec.layers.size()) ? spec.layers[l].window : 0;
    const int64_t t = w > 0 ? std::min(w, p.ctx_size) : p.ctx_size;
    p.kv_bytes += 2 * row * static_cast<uint64_t>(t) * static_cast<uint64_t>(std::max<int64_t>(1, o.parallel));
  }

  p.resident_weight_bytes = stream ? p.weight_bytes - p.expert_bytes : p.weight_bytes;
  if (stream) {
    // What the engine will use (a budget beyond every expert is never filled).
    p.expert_cache_bytes = std::min(resolve_expert_cache_bytes(static_cast<uint64_t>(o.expert_cache_mb) << 20, layout),
                                    layout.total_read_bytes());
  }
  p.total_bytes = p.resident_weight_bytes + p.expert_cache_bytes + p.kv_bytes + p.headroom_bytes;
  p.fits = p.total_bytes <= p.available_bytes;

  // Decode: every resident weight but the embedding (one row per token; all of it when tied to the head),
  // plus top_k experts per MoE layer.
  const uint64_t n_experts_all = layout.all().size();
  const double expert_tensor = moe ? static_cast<double>(p.expert_bytes) / n_experts_all : 0.0;
  const double expert_read = moe ? static_cast<double>(layout.total_read_bytes()) / n_experts_all : 0.0;
  const double used_experts = static_cast<double>(layout.n_moe_layers() * spec.top_k);
  const uint64_t dense = p.weight_bytes - p.expert_bytes - (spec.tied_embeddings ? 0 : embed_bytes);
  p.bytes_per_token = dense + static_cast<uint64_t>(used_experts * expert_tensor);
  if (stream) {
    p.expert_hit_rate = o.expert_hit_rate >= 0
                            ? std::min(1.0, o.expert_hit_rate)
                            : std::min(1.0, static_cast<double>(p.expert_cache_bytes) / layout.total_read_bytes());
    p.ssd_bytes_per_token = static_cast<uint64_t>(used_experts * expert_read * (1.0 - p.expert_hit_rate));
  } else {
    p.expert_hit_rate = 1.0;
  }

  if (stream) {
    p.strategy = p.expert_cache_bytes >= layout.total_read_bytes() ? "full" : "ssd_streaming";
    p.note = fmt::format("experts streamed from the drive into a {} cache ({:.0f}% of {} of experts)",
                         gb(p.expert_cache_bytes), 100.0 * p.expert_cache_bytes / layout.total_read_bytes(),
                         gb(layout.total_read_bytes()));
    if (!p.fits)
      p.note += fmt::format("; but the resident part needs {} of {} available: lower {} or {}", gb(p.total_bytes),
                            gb(p.available_bytes), option_flag("ctx_size"), option_flag("expert_cache_mb"));
  } else if (p.fits) {
    p.strategy = "full";
    p.note = fmt::format("all weights resident: {} of {} available", gb(p.total_bytes), gb(p.available_bytes));
  } else {
    p.strategy = "partial";
    p.note = fmt::format("needs {} but {} are available: the kernel will page weights in and out", gb(p.total_bytes),
                         gb(p.available_bytes));
    if (moe) {
      const uint64_t rest = p.weight_bytes - p.expert_bytes + p.kv_bytes + p.headroom_bytes;
      p.note += rest < p.available_bytes
                    ? fmt::format("; use {} (cache up to {} MiB)", option_flag("stream_experts"),
                                  (p.available_bytes - rest) >> 20)
                    : "; even without its experts the model does not fit";
    }
  }
  if (o.stream_experts && !moe) p.note += fmt::format("; {} ignored: the model has no experts", option_flag("stream_experts"));
  return p;
}

std::string MemoryPlan::to_json() const {
  nlohmann::json j = {{"strategy", strategy},
                      {"fits", fits},
                      {"note", note},
                      {"weight_bytes", weight_bytes},
                      {"expert_bytes", expert_bytes},
                      {"resident_weight_bytes", resident_weight_bytes},
                      {"expert_cache_bytes", expert_cache_bytes},
                      {"kv_bytes", kv_bytes},
                      {"headroom_bytes", headroom_bytes},
                      {"total_bytes", total_bytes},
                      {"available_bytes", available_bytes},
                      {"ctx_size", ctx_size},
                      {"bytes_per_token", bytes_per_token},
                      {"ssd_bytes_per_token", ssd_bytes_per_token},
                      {"expert_hit_rate", expert_hit_rate}};
  return j.dump();
}

}  // namespace lmlab
