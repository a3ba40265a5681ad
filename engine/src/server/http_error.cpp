// OpenAI error bodies for the server (see http_error.h).
#include "server/http_error.h"

#include <nlohmann/json.hpp>

namespace lmlab::server {

HttpError http_error_from(const Error& e) {
  HttpError h;
  h.status = error_http_status(e.kind());
  h.type = std::string(error_openai_type(e.kind()));
  h.message = e.message();
  h.param = e.where();
  h.code = std::string(error_kind_name(e.kind()));
  return h;
}

HttpError http_error_not_found(const std::string& method, const std::string& path) {
  return {404, "invalid_request_error", "no route for " + method + " " + path, "", "not_found"};
}

HttpError http_error_method_not_allowed(const std::string& method, const std::string& path) {
  return {405, "invalid_request_error", "method " + method + " is not allowed on " + path, "", "method_not_allowed"};
}

HttpError http_error_unauthorized() {
  return {401, "invalid_request_error", "missing or incorrect API key (send 'Authorization: Bearer KEY')", "",
          "invalid_api_key"};
}

HttpError http_error_internal(const std::string& message) { return {500, "server_error", message, "", "internal"}; }

HttpError http_error_busy(int parallel, int queue) {
  return {429, "rate_limit_error",
          "the server is busy: " + std::to_string(parallel) + " generations running and " + std::to_string(queue) +
              " waiting (--parallel, --queue); retry later",
          "", "queue_full"};
}

HttpError http_error_loading() {
  return {503, "server_error", "the model is still loading; retry shortly", "", "model_loading"};
}

HttpError http_error_device_lost(const std::string& fault) {
  return {503, "server_error", "the GPU is unusable after a device fault (" + fault + "); restart the server", "",
          "device_lost"};
}

HttpError http_error_shutting_down() {
  return {503, "server_error", "the server is shutting down", "", "shutting_down"};
}

HttpError http_error_body_too_large(uint64_t max_bytes) {
  return {413, "invalid_request_error",
          "the request body is larger than " + std::to_string(max_bytes) + " bytes (--max-body-mb)", "",
          "body_too_large"};
}

std::string error_body(const HttpError& e) {
  using nlohmann::ordered_json;  // keys in OpenAI's order
  ordered_json err = {{"message", e.message},
                      {"type", e.type},
                      {"param", e.param.empty() ? ordered_json() : ordered_json(e.param)},
                      {"code", e.code.empty() ? ordered_json() : ordered_json(e.code)}};
  return ordered_json{{"error", err}}.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace lmlab::server
