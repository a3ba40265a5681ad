// lmlab serve --model DIR [--host 127.0.0.1] [--port 5413]: the OpenAI-compatible server (lmlab/server.h).
// SIGINT/SIGTERM stop it cleanly: no new generations, running ones finish within --shutdown-timeout or are
// cancelled, exit 0.
#include <fmt/format.h>
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "common.h"
#include "flag_checks.h"
#include "lmlab/server.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  ServerOptions server;
};

int run_serve(Flags fl) {
  // Block the stop signals in every thread (the engine's workers inherit this mask); one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server

  // The socket is bound first and answers 503 while the model loads (Server's loader constructor).
  const auto t0 = std::chrono::steady_clock::now();
  Server server([&fl] { return Model::load(fl.engine.model, fl.engine.options()); }, fl.server,
                [&fl, t0](const Server& s) {
                  if (!s.chat_template_error().empty())
                    fmt::print(stderr, "lmlab serve: warning: no chat template, /v1/chat/completions will answer 400: {}\n",
                               s.chat_template_error());
                  fmt::print(stderr, "lmlab serve: model '{}' ready in {:.1f} s, serving on http://{}:{} (parallel {}, tool calls: {})\n",
                             s.model_id(),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                             fl.server.host, s.bound_port(), fl.server.parallel, s.tool_call_format());
                });
  std::thread([&server, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.stop();
  }).detach();
  fmt::print(stderr, "lmlab serve: listening on http://{}:{}; loading {} (requests get 503 until it is ready)\n", fl.server.host, server.bound_port(),
             fl.engine.model);
  server.listen();
  if (const std::string err = server.load_error(); !err.empty()) {
    fmt::print(stderr, "lmlab serve: {}\n", err);
    return 1;
  }
  fmt::print(stderr, "lmlab serve: stopped\n");
  return 0;
}

}  // namespace

void register_serve(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub =
      app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /metrics)");
  fl->engine.add_to(*sub);
  sub->add_option("--host", fl->server.host, "address to listen on");
  sub->add_option("--port", fl->server.port, "port (0 = any free port)")->check(CLI::Range(0, 65535));
  sub->add_option("--max-tokens", fl->server.max_tokens, "max_tokens of requests that give none, and its cap")
      ->check(CLI::PositiveNumber);
  sub->add_option("--api-key", fl->server.api_key, "require 'Authorization: Bearer KEY' (all but /health)");
  sub->add_option("--parallel", fl->server.parallel, "sequences decoded together: the batch's maximum number of active generations (one forward step for all)")->check(CLI::Range(1, ServerOptions::kMaxParallel));
  sub->add_option("--queue", fl->server.queue, "requests waiting for a generation slot; more get 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  sub->add_option_function<double>(
         "--max-body-mb", [fl](double mb) { fl->server.max_body_bytes = static_cast<uint64_t>(mb * 1048576.0); },
         "largest request body in MiB (413 beyond; default 4)")
      ->check(finite_range(0.001, 1024));
  sub->add_option("--shutdown-timeout", fl->server.shutdown_timeout_s,
                  "seconds SIGTERM/SIGINT lets running generations finish before cancelling them")
      ->capture_default_str()
      ->check(finite_range(0, 3600));
  sub->add_option("--model-id", fl->server.model_id, "model id reported by /v1/models (default: the directory name)");
  sub->callback(guarded([fl] { return run_serve(*fl); }));
}

}  // namespace lmlab::cli
