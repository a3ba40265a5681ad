// The engine's public entry point: load a Hugging Face model directory, open sessions on it, run tokens.
// Everything the lab, the server and the CLI do with a model goes through this header and generate.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/options.h"
#include "lmlab/stream_counters.h"
#include "lmlab/tokenizer.h"

namespace lmlab {

// Counters of the engine's memory and caches (the same numbers /metrics exports).
struct ModelCounters {
  uint64_t kv_cache_bytes = 0;       // bytes of KV storage allocated now (sessions + prompt cache)
  uint64_t kv_cache_peak_bytes = 0;
  uint64_t prompt_cache_bytes = 0;   // of which held by the prompt cache
  uint64_t prompt_cache_entries = 0; // stored blocks (prefix-tree nodes)
  uint64_t prompt_cache_lookups = 0, prompt_cache_hits = 0, prompt_cache_hit_tokens = 0;
  uint64_t prompt_cache_evictions = 0;
  // Device memory held by the backend's allocator (weights, KV blocks, scratch); zeros on the CPU backend.
  uint64_t device_memory_bytes = 0, device_memory_peak_bytes = 0;
  // Decode steps the device ran as one replayed graph, and its busy nanoseconds in them (the host's time between
  // steps excluded); zeros on the CPU backend and where decode runs without a graph.
  uint64_t device_decode_steps = 0, device_decode_ns = 0;
  StreamCounters stream;  // SSD expert streaming (zeros unless --stream-experts); render_prometheus() exports it
};

struct ModelInfo {
  std::string arch;  // canonical model_type
  std::filesystem::path dir;
  int64_t vocab = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t n_experts = 0, top_k = 0;
  int64_t max_positions = 0, ctx_size = 0;
  uint64_t weight_bytes = 0;  // bytes of the safetensors files as stored
  std::string weight_format;  // e.g. "bf16", "q4g64"
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  std::vector<std::string> ignored_config_keys;  // config.json keys lmlab did not read
  std::vector<int64_t> layer_windows;            // per layer: 0 = full attention, else window length
  int64_t device_layers = 0;  // --device cuda: layers [0, device_layers) run on the GPU, the rest on the CPU
  std::string device_plan;    // how --gpu-layers 0 chose device_layers ("" when given or on the CPU)
};

class Session;

// One sequence's share of Model::append_batch: the session and the tokens it appends in this step.
struct BatchAppend {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
};

class Model {
 public:
  // Throws lmlab::Error naming the file/field/tensor on any problem with the directory.
  static std::shared_ptr<Model> load(const std::filesystem::path& dir, const ModelOptions& options = {});
  ~Model();

  const ModelInfo& info() const;
  const ModelOptions& options() const;  // as given, with what 0 means resolved (prefill_size)
  const Tokenizer& tokenizer() const;  // throws when the directory has no tokenizer.json
  bool has_tokenizer() const;
  std::unique_ptr<Session> new_session() const;
  ModelCounters counters() const;

  // Continuous batching: one forward step for several sessions of this model, reading every weight matrix once
  // for all of them (attention runs per session over its own KV). Each session appends its tokens (a decode
  // token or a prompt chunk) as Session::append would, and gets the logits [vocab] of its last one, valid until
  // that session's next append. A row's logits equal the session's own append up to kernel rounding (matmuls
  // over more rows may take other tiles). The caller bounds the step's total tokens (e.g. by --prefill-size).
  // Any error (context overflow, a bad id, the KV budget) throws and leaves every session as it was.
  std::vector<std::span<const float>> append_batch(std::span<const BatchAppend> entries) const;

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// One sequence's state (its KV cache) on a model. Not thread-safe; use one session per request.
class Session {
 public:
  explicit Session(const Model& model);
  ~Session();

  // Appends tokens at the end of the context (in chunks of prefill_size) and returns their logits:
  // [n, vocab] when all_logits, else [vocab] of the last token. Valid until the next call.
  // A context overflow (n_past + n > ctx_size) is an invalid_input Error and leaves the session unchanged.
  std::span<const float> append(std::span<const int32_t> tokens, bool all_logits = false);

  int64_t n_past() const;
  std::span<const int32_t> tokens() const;  // the context so far
  void truncate(int64_t n);                  // keep the first n tokens
  void reset();                              // empty the context

  // Prepares the session for `prompt`: keeps the longest prefix it already holds, or (when empty) adopts
  // the longest prefix the model's prompt cache has. Always leaves at least the last prompt token to run.
  // Returns the number of prompt tokens that need no computation.
  int64_t reuse_prefix(std::span<const int32_t> prompt);
  // Offers this session's full KV blocks to the model's prompt cache (no-op when it is off).
  void publish() const;
  uint64_t kv_bytes() const;
  const Model& model() const { return *model_; }

 private:
  friend class Model;  // append_batch
  void check_append(std::span<const int32_t> tokens) const;
  void restore(int64_t n_past);  // after a failed forward

  struct State;
  const Model* model_;
  std::unique_ptr<State> state_;
};

}  // namespace lmlab
