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

// One table: kind -> name, HTTP status, OpenAI error type.
namespace {
struct KindInfo {
  std::string_view name;
  int http_status;
  std::string_view openai_type;
};
constexpr KindInfo kKindInfo[] = {
    {"invalid_input", 400, "invalid_request_error"},
    {"model_format", 500, "server_error"},
    {"io", 500, "server_error"},
    {"out_of_memory", 503, "server_error"},
    {"unsupported", 501, "invalid_request_error"},
    {"cancelled", 499, "cancelled"},
    {"internal", 500, "server_error"},
};
const KindInfo& info(ErrorKind k) { return kKindInfo[static_cast<int>(k)]; }
}  // namespace

std::string_view error_kind_name(ErrorKind kind) { return info(kind).name; }
int error_http_status(ErrorKind kind) { return info(kind).http_status; }
std::string_view error_openai_type(ErrorKind kind) { return info(kind).openai_type; }

}  // namespace lmlab
