// What every route of the server shares: the model, the options, the chat template, counters, slots and the
// batch scheduler.
#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "lmlab/chat_template.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "server/generation.h"
#include "server/http_error.h"
#include "server/metrics.h"
#include "server/tool_call_format.h"

namespace lmlab::server {

// Everything that exists once the model has loaded.
struct LoadedModel {
  explicit LoadedModel(std::shared_ptr<Model> m) : model(std::move(m)), scheduler(*model) {}
  std::shared_ptr<Model> model;
  std::string model_id;
  std::optional<ChatTemplate> chat_template;  // absent when the model ships none or it failed to load
  std::string chat_template_error;            // why it is absent
  ToolCallFormat tool_format = ToolCallFormat::none;  // from the template's markers and the architecture
  BatchScheduler scheduler;  // the engine thread: every generation's forward steps, batched
};

struct ServerState {
  explicit ServerState(ServerOptions o) : options(std::move(o)), slots(options.parallel) {}
  ServerOptions options;
  ServerMetrics metrics;
  GenerationSlots slots;
  // Null until the model has loaded (routes answer 503 until then); set once, never changed after.
  std::atomic<LoadedModel*> loaded{nullptr};
  std::unique_ptr<LoadedModel> loaded_owner;
  std::atomic<int> admitted{0};        // generation requests between admission and their last byte
  std::atomic<bool> draining{false};   // stop() began: new generation requests get 503
};

// A generation request's place among the parallel + queue admitted ones; try_enter gives null when full.
class Admission {
 public:
  static std::shared_ptr<Admission> try_enter(ServerState& st) {
    const int limit = st.options.parallel + st.options.queue;
    int now = st.admitted.load();
    do {
      if (now >= limit) return nullptr;
    } while (!st.admitted.compare_exchange_weak(now, now + 1));
    return std::shared_ptr<Admission>(new Admission(st));
  }
  ~Admission() { st_.admitted.fetch_sub(1); }
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

 private:
  explicit Admission(ServerState& st) : st_(st) {}
  ServerState& st_;
};

void reply_error(httplib::Response& res, const HttpError& e);
void register_routes(httplib::Server& http, ServerState& state);
const char* route_method(const std::string& path);  // "GET"/"POST", or null for an unknown path (405 vs 404)

}  // namespace lmlab::server
