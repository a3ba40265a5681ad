// Flags shared by every subcommand that runs the engine (DESIGN.md: keep them stable).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "lmlab/error.h"
#include "lmlab/model.h"

namespace lmlab::cli {

struct EngineFlags {
  std::string model;
  std::string device = "cpu";
  int64_t gpu_layers = -1;
  int64_t ctx_size = 0;
  int64_t prefill_size = 512;
  int threads = 0;
  bool turbo_kv = false;
  std::string kv_mode;  // f32 | turbo | affine4 | affine8 (--turbo-kv = turbo)
  int kv_k_bits = 5, kv_v_bits = 4;
  bool kv_k_qjl = false;
  int64_t kv_hot_window = 0;           // 0: every token compressed (docs/turboquant.md: why)
  int64_t kv_budget_mb = 0, prompt_cache_mb = 0;
  bool stream_experts = false;
  int64_t expert_cache_mb = 0;
  std::string expert_cache_policy = "reuse";
  int expert_queue_depth = 8;
  bool no_expert_predict = false;

  void add_to(CLI::App& app, bool model_required = true);
  ModelOptions options() const;  // rejects flags this build cannot honour yet, by name
};

// Runs a subcommand body, printing lmlab::Error (and other exceptions) as one line on stderr; returns exit code.
int run_guarded(const std::function<int()>& body);

void register_verify(CLI::App& app);
void register_generate(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_info(CLI::App& app);
void register_convert(CLI::App& app);
void register_synth(CLI::App& app);
void register_iobench(CLI::App& app);
void register_decode_bench(CLI::App& app);
void register_template(CLI::App& app);
void register_serve(CLI::App& app);

}  // namespace lmlab::cli

namespace lmlab::cli {
// Wraps a subcommand body as a CLI11 callback: errors print one line, a non-zero code becomes the exit code.
std::function<void()> guarded(std::function<int()> body);
}  // namespace lmlab::cli
