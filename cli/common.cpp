#include "common.h"

#include <fmt/format.h>

#include <iostream>

#include "lmlab/error.h"

namespace lmlab::cli {

void EngineFlags::add_to(CLI::App& app, bool model_required) {
  auto* m = app.add_option("--model", model, "Hugging Face model directory (config.json, *.safetensors)");
  if (model_required) m->required();
  app.add_option("--device", device, "cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--ctx-size", ctx_size, "context size in tokens (0 = the model's max positions)");
  app.add_option("--prefill-size", prefill_size, "prompt tokens per forward chunk");
  app.add_option("--threads", threads, "CPU threads (0 = all)");
  app.add_flag("--turbo-kv", turbo_kv, "TurboQuant-compressed KV cache");
  app.add_flag("--stream-experts", stream_experts, "stream MoE experts from SSD");
  app.add_option("--expert-cache-mb", expert_cache_mb, "expert cache budget for --stream-experts");
}

ModelOptions EngineFlags::options() const {
  if (turbo_kv) throw Error(ErrorKind::unsupported, "--turbo-kv", "TurboQuant KV cache is not in this build yet");
  if (stream_experts)
    throw Error(ErrorKind::unsupported, "--stream-experts", "expert streaming is not in this build yet");
  ModelOptions o;
  o.device = device == "cuda" ? Device::cuda : Device::cpu;
  o.ctx_size = ctx_size;
  o.prefill_size = prefill_size;
  o.threads = threads;
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
