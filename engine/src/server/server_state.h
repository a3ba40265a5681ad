// What every route of the server shares: the model, the options, the chat template, counters and slots.
#pragma once

#include <httplib.h>

#include <memory>
#include <optional>
#include <string>

#include "lmlab/chat_template.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "server/generation.h"
#include "server/http_error.h"
#include "server/metrics.h"

namespace lmlab::server {

struct ServerState {
  ServerState(std::shared_ptr<Model> m, ServerOptions o)
      : model(std::move(m)), options(std::move(o)), slots(options.parallel) {}
  std::shared_ptr<Model> model;
  ServerOptions options;
  std::string model_id;
  std::optional<ChatTemplate> chat_template;  // absent when the model ships none or it failed to load
  std::string chat_template_error;            // why it is absent
  ServerMetrics metrics;
  GenerationSlots slots;
};

void reply_error(httplib::Response& res, const HttpError& e);
void register_routes(httplib::Server& http, ServerState& state);
const char* route_method(const std::string& path);  // "GET"/"POST", or null for an unknown path (405 vs 404)

}  // namespace lmlab::server
