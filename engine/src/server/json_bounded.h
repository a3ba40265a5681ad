// JSON from outside (request bodies, model output) parsed with a nesting bound. nlohmann's parser is iterative,
// but copying, dumping and converting a value recurse once per level: a 4 MiB body of '[' would overflow the
// stack there. The depth is checked on the text before parsing, so a too-deep document is never built.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace lmlab::server {

// Far deeper than any request or tool schema, far shallower than what the stack can take.
inline constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text` (brackets inside strings ignored); no validation.
int json_nesting_depth(std::string_view text);

// The parsed document, or nullopt when `text` is not JSON or nests deeper than max_depth. Never throws.
std::optional<nlohmann::ordered_json> parse_json_bounded(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace lmlab::server
