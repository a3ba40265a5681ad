#include "common.h"

#include <fmt/format.h>

#include <iostream>
#include <limits>

#include "lmlab/error.h"

namespace lmlab::cli {

void EngineFlags::add_to(CLI::App& app, bool model_required) {
  auto* m = app.add_option("--model", model, "Hugging Face model directory (config.json, *.safetensors)");
  if (model_required) m->required();
  app.add_option("--device", device, "cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--gpu-layers", gpu_layers, "with --device cuda: the first N layers on the GPU, the rest on the "
                 "CPU (-1 = all)")->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--ctx-size", ctx_size, "context size in tokens (0 = the model's max positions)");
  app.add_option("--prefill-size", prefill_size, "prompt tokens per forward chunk");
  app.add_option("--threads", threads, "CPU threads (0 = all)");
  app.add_flag("--turbo-kv", turbo_kv, "TurboQuant-compressed KV cache (same as --kv-mode turbo)");
  app.add_option("--kv-mode", kv_mode, "KV storage of full-attention layers")
      ->check(CLI::IsMember({"f32", "turbo", "affine4", "affine8", "f16"}));
  app.add_option("--kv-k-bits", kv_k_bits, "TurboQuant Lloyd-Max bits of K (2-5, default 5)")->check(CLI::Range(2, 5));
  app.add_option("--kv-v-bits", kv_v_bits, "TurboQuant Lloyd-Max bits of V (2-5, default 4)")->check(CLI::Range(2, 5));
  app.add_flag("--kv-k-qjl", kv_k_qjl, "TurboQuant K with the 1-bit QJL residual correction (paper's 4.25-bit K "
                                       "with --kv-k-bits 3)");
  app.add_option("--kv-hot-window", kv_hot_window,
                 "compressed KV: most recent tokens kept exact in f32 (activation threshold; default 0 = every "
                 "token compressed)");
  app.add_option("--kv-budget-mb", kv_budget_mb, "KV cache budget, all sessions (0 = unlimited)");
  app.add_option("--prompt-cache-mb", prompt_cache_mb, "prompt (prefix) cache budget (0 = off)");
  app.add_flag("--stream-experts", stream_experts, "stream MoE experts from SSD");
  app.add_option("--expert-cache-mb", expert_cache_mb, "expert cache budget for --stream-experts (0 = 25% of experts)");
  app.add_option("--expert-cache-policy", expert_cache_policy, "reuse | lru")->check(CLI::IsMember({"reuse", "lru"}));
  app.add_option("--expert-queue-depth", expert_queue_depth, "expert reads in flight");
  app.add_flag("--no-expert-predict", no_expert_predict, "do not read ahead the next layer's predicted experts");
}

ModelOptions EngineFlags::options() const {
  ModelOptions o;
  o.device = device == "cuda" ? Device::cuda : Device::cpu;
  o.gpu_layers = gpu_layers;
  o.ctx_size = ctx_size;
  o.prefill_size = prefill_size;
  o.threads = threads;
  const std::string mode = turbo_kv ? "turbo" : kv_mode.empty() ? "f32" : kv_mode;
  if (turbo_kv && !kv_mode.empty() && kv_mode != "turbo")
    throw Error(ErrorKind::invalid_input, "--kv-mode", "conflicts with --turbo-kv");
  o.kv_mode = kv_mode_from_name(mode);
  o.kv_k_bits = kv_k_bits;
  o.kv_v_bits = kv_v_bits;
  o.kv_k_qjl = kv_k_qjl;
  o.kv_hot_window = kv_hot_window;
  o.kv_budget_mb = kv_budget_mb;
  o.prompt_cache_mb = prompt_cache_mb;
  o.stream_experts = stream_experts;
  o.expert_cache_mb = expert_cache_mb;
  o.expert_cache_policy = expert_cache_policy;
  o.expert_queue_depth = expert_queue_depth;
  o.expert_predict_next = !no_expert_predict;
  return o;
}

int run_guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::cerr << "lmlab: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lmlab: internal error: " << e.what() << "\n";
    return 2;
  }
}

}  // namespace lmlab::cli

namespace lmlab::cli {
std::function<void()> guarded(std::function<int()> body) {
  return [body = std::move(body)] {
    const int rc = run_guarded(body);
    if (rc != 0) throw CLI::RuntimeError(rc);
  };
}
}  // namespace lmlab::cli
