// lmlab::Error: the one exception type the engine throws at load, parse and API boundaries.
// Every error carries a kind (mapped to an OpenAI error type, an HTTP status and a CLI exit code by one table
// in util/error.cpp) and the
// context that names what is wrong: a file, a tensor, a config field or a request parameter.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace lmlab {

enum class ErrorKind {
  invalid_input,  // a request or argument is malformed (HTTP 400)
  model_format,   // a model file is corrupt, truncated or inconsistent
  io,             // the OS failed a read, open or mmap
  out_of_memory,  // a budget or allocation was exceeded
  unsupported,    // valid input we do not implement (unknown architecture, rope type, dtype)
  cancelled,      // the caller cancelled (client disconnected)
  internal,       // a bug in lmlab
};

std::string_view error_kind_name(ErrorKind kind);
int error_http_status(ErrorKind kind);         // 400, 404, 500, 501, 503...
std::string_view error_openai_type(ErrorKind kind);  // "invalid_request_error", "server_error", ...
int error_exit_code(ErrorKind kind);           // the CLI's exit status: 1, or 2 for a bug (internal)

class Error : public std::runtime_error {
 public:
  // `where` names the thing at fault, e.g. "model.safetensors: tensor 'model.norm.weight'".
  Error(ErrorKind kind, std::string where, std::string message);

  ErrorKind kind() const { return kind_; }
  const std::string& where() const { return where_; }
  const std::string& message() const { return message_; }

 private:
  ErrorKind kind_;
  std::string where_;
  std::string message_;
};

}  // namespace lmlab
