// lmlab::Server: binds, authenticates, routes (routes.cpp) and answers unknown routes with OpenAI error bodies.
// Lifecycle: the constructor binds (port 0 picks a free port), listen() serves until stop().
#include "lmlab/server.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <sys/socket.h>

#include "lmlab/error.h"
#include "server/server_state.h"
#include "text/unicode.h"

namespace lmlab {

using server::ServerState;

struct Server::Impl {
  explicit Impl(ServerOptions o) : state(std::move(o)) {}
  ServerState state;
  httplib::Server http;
  int port = -1;
  int listen_fd = -1;  // the bound socket, to widen httplib's listen backlog
  std::atomic<bool> stop_requested{false}, listening{false}, listen_returned{false};
  std::thread loader;  // Server(ModelLoader, ...): loads the model while the socket answers 503
  mutable std::mutex load_error_mutex;
  std::string load_error;
};

namespace {

std::string default_model_id(const Model& model) {
  std::filesystem::path dir = model.info().dir.lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  return dir.filename().string();
}

bool same_secret(const std::string& given, const std::string& key) {
  if (given.size() != key.size() || key.empty()) return false;
  unsigned diff = 0;  // constant time in the key's length
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

bool authorized(const httplib::Request& req, const std::string& key) {
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (auth.rfind(prefix, 0) == 0) return same_secret(auth.substr(prefix.size()), key);
  return same_secret(req.get_header_value("x-api-key"), key);
}

}  // namespace

namespace {

void check_options(const ServerOptions& options) {
  if (options.parallel < 1) throw Error(ErrorKind::invalid_input, "--parallel", "must be at least 1");
  if (options.max_tokens < 1) throw Error(ErrorKind::invalid_input, "--max-tokens", "must be at least 1");
  if (options.port < 0 || options.port > 65535) throw Error(ErrorKind::invalid_input, "--port", "must be 0..65535");
  if (options.queue < 0 || options.queue > 4096) throw Error(ErrorKind::invalid_input, "--queue", "must be 0..4096");
  if (options.max_body_bytes < 1024) throw Error(ErrorKind::invalid_input, "--max-body-mb", "must be at least 1 KiB");
  if (!(options.shutdown_timeout_s >= 0) || options.shutdown_timeout_s > 3600)
    throw Error(ErrorKind::invalid_input, "--shutdown-timeout", "must be 0..3600 seconds");
}

// The model's half of the state, checked; published to the routes by the caller.
std::unique_ptr<server::LoadedModel> make_loaded(std::shared_ptr<Model> model, const ServerOptions& options) {
  if (!model) throw Error(ErrorKind::invalid_input, "model", "no model");
  if (!model->has_tokenizer())
    throw Error(ErrorKind::model_format, model->info().dir.string(), "the server needs tokenizer.json");
  auto m = std::make_unique<server::LoadedModel>(std::move(model));
  m->model_id = options.model_id.empty() ? default_model_id(*m->model) : options.model_id;
  // JSON bodies carry the id: it must be text (a directory name need not be).
  if (!tok::utf8_valid(m->model_id))
    throw Error(ErrorKind::invalid_input, options.model_id.empty() ? "model directory name" : "--model-id",
                "the model id must be valid UTF-8 (set --model-id)");
  try {
    m->chat_template = ChatTemplate::from_model_dir(m->model->info().dir);
    m->tool_format = server::tool_call_format_for(m->chat_template->source(), m->model->info().arch);
  } catch (const Error& e) {
    // No usable template: /v1/chat/completions answers 400 with this reason; completions still work.
    m->chat_template_error = e.what();
  }
  return m;
}

void publish(ServerState& st, std::unique_ptr<server::LoadedModel> m) {
  st.loaded_owner = std::move(m);
  st.loaded.store(st.loaded_owner.get());
}

}  // namespace

Server::Server(std::shared_ptr<Model> model, ServerOptions options) {
  check_options(options);
  auto loaded = make_loaded(std::move(model), options);
  impl_ = std::make_unique<Impl>(std::move(options));
  publish(impl_->state, std::move(loaded));
  bind();
}

Server::Server(ModelLoader load, ServerOptions options, std::function<void(const Server&)> on_ready) {
  check_options(options);
  impl_ = std::make_unique<Impl>(std::move(options));
  bind();
  impl_->loader = std::thread([this, load = std::move(load), on_ready = std::move(on_ready)] {
    try {
      publish(impl_->state, make_loaded(load(), impl_->state.options));
      if (on_ready) on_ready(*this);
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(impl_->load_error_mutex);
        impl_->load_error = e.what();
      }
      stop();
    }
  });
}

void Server::bind() {
  ServerState& st = impl_->state;

  httplib::Server& http = impl_->http;
  // Every admitted request holds a worker while it waits for a slot; 4 more keep /health and /metrics answering.
  const size_t workers = static_cast<size_t>(st.options.parallel + st.options.queue + 4);
  http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  http.set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    if (st.options.api_key.empty() || req.path == "/health" || authorized(req, st.options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    server::reply_error(res, server::http_error_unauthorized());
    return httplib::Server::HandlerResponse::Handled;
  });
  // Called for every status >= 400; fills in only responses that have no body yet (unrouted requests).
  http.set_payload_max_length(st.options.max_body_bytes);
  // httplib drops a client after 5 s without progress; on a loaded machine a live client reading 64 streams can
  // stall that long. 30 s still frees the slot of a dead one (a hang-up is usually seen at once as a failed write).
  http.set_read_timeout(30, 0);
  http.set_write_timeout(30, 0);
  http.set_error_handler(httplib::Server::HandlerWithResponse([&st](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_) return httplib::Server::HandlerResponse::Unhandled;
    if (const char* allowed = server::route_method(req.path); res.status == 404 && allowed) {
      server::reply_error(res, server::http_error_method_not_allowed(req.method, req.path));
      res.set_header("Allow", allowed);
    } else if (res.status == 404) {
      server::reply_error(res, server::http_error_not_found(req.method, req.path));
    } else if (res.status == 413) {
      server::reply_error(res, server::http_error_body_too_large(st.options.max_body_bytes));
    } else {
      server::reply_error(res, {res.status, "invalid_request_error",
                                fmt::format("HTTP {} for {} {}", res.status, req.method, req.path), "", "bad_request"});
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  server::register_routes(http, st);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server binds the same port
  // and the kernel splits connections between the two.
  http.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    impl_->listen_fd = sock;
  });

  const ServerOptions& o = st.options;
  impl_->port = o.port == 0 ? http.bind_to_any_port(o.host) : (http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (impl_->port <= 0) throw Error(ErrorKind::io, fmt::format("{}:{}", o.host, o.port), "cannot bind the address");
  // Debian's libcpp-httplib is compiled with a listen backlog of 5: a burst of clients (64 streams connecting at
  // once) overflowed the accept queue and some connections were dropped unanswered. Linux lets listen() be called
  // again on a listening socket to change the backlog.
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, SOMAXCONN);
}

Server::~Server() {
  stop();
  if (impl_ && impl_->loader.joinable()) impl_->loader.join();  // a load cannot be interrupted: wait for it
}

void Server::listen() {
  if (impl_->stop_requested.load()) return;
  impl_->listening = true;
  impl_->http.listen_after_bind();
  impl_->listen_returned = true;
}

int Server::bound_port() const { return impl_->port; }

bool Server::ready() const { return impl_->state.loaded.load() != nullptr; }

std::string Server::load_error() const {
  std::lock_guard<std::mutex> lock(impl_->load_error_mutex);
  return impl_->load_error;
}

namespace {
const std::string kNone;
}

const std::string& Server::model_id() const {
  const server::LoadedModel* m = impl_->state.loaded.load();
  return m ? m->model_id : kNone;
}

const std::string& Server::chat_template_error() const {
  const server::LoadedModel* m = impl_->state.loaded.load();
  return m ? m->chat_template_error : kNone;
}

std::string_view Server::tool_call_format() const {
  const server::LoadedModel* m = impl_->state.loaded.load();
  return server::tool_call_format_name(m ? m->tool_format : server::ToolCallFormat::none);
}

void Server::stop() {
  if (!impl_) return;
  ServerState& st = impl_->state;
  using Clock = std::chrono::steady_clock;
  auto wait_idle = [&](Clock::time_point until) {
    while (st.admitted.load() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  // Drain: refuse new generations, let the running ones finish for a while, then cancel the rest (they stop
  // at their next token, which takes one decode step).
  st.draining = true;
  wait_idle(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(st.options.shutdown_timeout_s)));
  st.slots.cancel_all();
  wait_idle(Clock::now() + std::chrono::seconds(30));
  impl_->stop_requested = true;
  // listen() may be between its check and httplib's running flag: wait for one or the other.
  while (impl_->listening && !impl_->listen_returned && !impl_->http.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
}

}  // namespace lmlab
