// Memory plan of a model directory before loading it: which strategy fits the memory available, the bytes
// of each part, and the bytes one decoded token touches (the lab turns them into a decode estimate with the
// bandwidths it measured: results' estimate_decode). `lmlab info` prints it
// (--json: one object; the server prints the same object in its ready event).
//
// Strategies:
// - full: every weight resident (no streaming, or an expert cache that holds every expert).
// - partial: no streaming, and the weights do not fit: the kernel pages the mapped weights in and out
//   (works, slowly, with reads nobody counts); for a MoE the note recommends --stream-experts.
// - ssd_streaming: --stream-experts with a cache smaller than the experts: everything but the experts is
//   resident and the experts are read from the drive with O_DIRECT.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace lmlab {

struct MemoryPlanOptions {
  bool stream_experts = false;
  int64_t expert_cache_mb = 0;          // MiB; 0 = the engine's default (option table: expert_cache_mb)
  int64_t ctx_size = 0;                 // 0 = the model's max positions
  int64_t parallel = 1;                 // sequences whose KV cache is held at once
  uint64_t available_bytes = 0;         // 0 = /proc/meminfo MemAvailable (GPU: pass the device's free bytes)
  uint64_t headroom_bytes = 256ull << 20;  // activations, buffers, allocator slack
  uint64_t kv_bytes_per_value = 4;      // f32 K/V rows
  double expert_hit_rate = -1;          // < 0: cache share of the experts (what random routing gives)
};

struct MemoryPlan {
  std::string strategy;        // full | partial | ssd_streaming
  bool fits = false;           // total_bytes <= available_bytes
  std::string note;            // one line: why this strategy, or what to change
  uint64_t weight_bytes = 0;   // every tensor as stored
  uint64_t expert_bytes = 0;   // the MoE experts' tensors (0 for a dense model)
  uint64_t resident_weight_bytes = 0;
  uint64_t expert_cache_bytes = 0;  // streaming budget (0 when not streaming)
  uint64_t kv_bytes = 0;            // at ctx_size for `parallel` sequences (sliding layers hold their window)
  uint64_t headroom_bytes = 0;
  uint64_t total_bytes = 0;         // resident weights + expert cache + KV + headroom
  uint64_t available_bytes = 0;
  int64_t ctx_size = 0;
  // Decode, per token:
  uint64_t bytes_per_token = 0;      // weight bytes one token reads (all but the unused experts and embedding rows)
  uint64_t ssd_bytes_per_token = 0;  // expected bytes from the drive: misses * aligned expert bytes
  double expert_hit_rate = 0;

  std::string to_json() const;       // one JSON object, keys as the fields above
};

// Reads config.json and the safetensors headers only (no weight is loaded). Throws Error like Model::load.
MemoryPlan plan_memory(const std::filesystem::path& model_dir, const MemoryPlanOptions& options);

uint64_t mem_available_bytes();  // /proc/meminfo MemAvailable; 0 when unreadable

}  // namespace lmlab
