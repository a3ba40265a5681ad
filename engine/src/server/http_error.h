// OpenAI error bodies: {"error":{"message","type","param","code"}} with the HTTP status that goes with them.
// lmlab::Error maps through error.cpp's one table (kind -> status, OpenAI type); its `where` names the
// request parameter at fault (param), and the kind's name is the code.
#pragma once

#include <cstdint>
#include <string>

#include "lmlab/error.h"

namespace lmlab::server {

struct HttpError {
  int status = 500;
  std::string type = "server_error";
  std::string message;
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};

HttpError http_error_from(const Error& e);
HttpError http_error_not_found(const std::string& method, const std::string& path);
HttpError http_error_method_not_allowed(const std::string& method, const std::string& path);
HttpError http_error_unauthorized();
HttpError http_error_internal(const std::string& message);
HttpError http_error_busy(int parallel, int queue);  // 429: every slot and queue place taken
HttpError http_error_shutting_down();                // 503
HttpError http_error_loading();                      // 503 while the model loads
HttpError http_error_device_lost(const std::string& fault);  // 503 after a device fault (util/device_fault.h)
HttpError http_error_body_too_large(uint64_t max_bytes);  // 413

std::string error_body(const HttpError& e);  // the JSON text

}  // namespace lmlab::server
