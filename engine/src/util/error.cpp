#include "lmlab/error.h"

namespace lmlab {

namespace {
std::string compose(ErrorKind kind, const std::string& where, const std::string& message) {
  std::string s(error_kind_name(kind));
  s += " error";
  if (!where.empty()) s += " in " + where;
  s += ": " + message;
  return s;
}
}  // namespace

Error::Error(ErrorKind kind, std::string where, std::string message)
    : std::runtime_error(compose(kind, where, message)),
      kind_(kind),
      where_(std::move(where)),
      message_(std::move(message)) {}

// One table: kind -> name, HTTP status, OpenAI error type, CLI exit code (2 only for bugs, so that a script can
// tell "lmlab refused the input" from "lmlab is broken").
namespace {
struct KindInfo {
  std::string_view name;
  int http_status;
  std::string_view openai_type;
  int exit_code;
};
constexpr KindInfo kKindInfo[] = {
    {"invalid_input", 400, "invalid_request_error", 1},
    {"model_format", 500, "server_error", 1},
    {"io", 500, "server_error", 1},
    {"out_of_memory", 503, "server_error", 1},
    {"unsupported", 501, "invalid_request_error", 1},
    {"cancelled", 499, "cancelled", 1},
    {"internal", 500, "server_error", 2},
};
const KindInfo& info(ErrorKind k) { return kKindInfo[static_cast<int>(k)]; }
}  // namespace

std::string_view error_kind_name(ErrorKind kind) { return info(kind).name; }
int error_http_status(ErrorKind kind) { return info(kind).http_status; }
std::string_view error_openai_type(ErrorKind kind) { return info(kind).openai_type; }
int error_exit_code(ErrorKind kind) { return info(kind).exit_code; }

}  // namespace lmlab
