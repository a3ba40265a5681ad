// Depth-checked JSON parsing (see json_bounded.h).
#include "server/json_bounded.h"

#include <algorithm>

namespace lmlab::server {

int json_nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::optional<nlohmann::ordered_json> parse_json_bounded(std::string_view text, int max_depth) {
  if (json_nesting_depth(text) > max_depth) return std::nullopt;
  try {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  } catch (const nlohmann::json::exception&) {  // defensive: allow_exceptions=false reports errors as discarded
    return std::nullopt;
  }
}

}  // namespace lmlab::server
