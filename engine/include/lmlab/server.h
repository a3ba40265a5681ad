// lmlab::Server: the OpenAI-compatible HTTP server over one loaded Model (DESIGN.md, `lmlab serve`).
// Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with
// stream=true as server-sent events), GET /metrics (Prometheus text, prefix lmlab_).
// Every request gets its own Session on the shared Model; at most ServerOptions::parallel generations run at
// once, advancing together in one batched forward step (continuous batching, server/batch_scheduler.h), at most `queue` more wait, the rest are answered 429; after stop() began, 503. Errors are OpenAI
// error bodies {"error":{"message","type","param","code"}}.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lmlab/model.h"

namespace lmlab {

struct ServerOptions {
  static constexpr int kMaxParallel = 1024;  // the most `parallel` may be (lmlab serve --parallel's range)
  std::string host = "127.0.0.1";
  int port = 5413;           // 0 = any free port (see Server::bound_port)
  std::string api_key;       // non-empty: requests (except /health) need "Authorization: Bearer KEY"
  int64_t max_tokens = 256;  // default when a request gives no max_tokens; also the per-request cap
  int parallel = 1;          // generations running at once: the active sequences of the batched decode step
  int queue = 16;            // generation requests waiting for one of those; more get 429 with Retry-After
  uint64_t max_body_bytes = uint64_t{4} << 20;  // larger request bodies get 413
  double shutdown_timeout_s = 10;  // stop(): in-flight generations may finish this long, then are cancelled
  std::string model_id;      // "" = the model directory's name
};

class Server {
 public:
  using ModelLoader = std::function<std::shared_ptr<Model>()>;

  // Binds the socket (so bound_port() is valid on return); throws Error(io) when the address is unusable,
  // Error(invalid_input) for bad options.
  Server(std::shared_ptr<Model> model, ServerOptions options);
  // Binds at once and loads the model on a thread meanwhile: until it has loaded, /health answers 503
  // {"status": "loading"} and the model routes 503 with Retry-After (a big model takes minutes; clients and
  // readiness probes see a server that is coming, not a refused connection). on_ready runs on that thread once
  // the model serves. If loading fails the server stops: listen() returns and load_error() says why.
  Server(ModelLoader load, ServerOptions options, std::function<void(const Server&)> on_ready = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void listen();  // serves until stop(); blocking
  int bound_port() const;
  bool ready() const;              // the model has loaded and requests are served
  std::string load_error() const;  // why loading failed ("" while loading or once loaded)
  // These three describe the loaded model ("" / "none" until ready()).
  const std::string& model_id() const;
  // Why the model's chat template could not be loaded ("" when it loaded); chat requests get it in their 400.
  const std::string& chat_template_error() const;
  // How tool calls are parsed out of answers: "hermes", "llama3", "mistral" or "none" (docs/server.md).
  std::string_view tool_call_format() const;
  // Thread-safe. New generation requests get 503; running ones may finish for shutdown_timeout_s, then the
  // remaining ones are cancelled (clients get a 503 error, in the stream for streams); then the listener shuts.
  void stop();

  struct Impl;

 private:
  void bind();  // routes, socket options, bind (both constructors)
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmlab
