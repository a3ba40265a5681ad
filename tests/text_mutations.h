// Seeded mutations of a valid text document for the fuzz tests of parsers of outside input (request bodies,
// scenario files): byte flips, truncations, spliced fragments, erased runs, and a value after some ':' replaced by
// a fragment (mutate_text); and, past the JSON layer, one value of a parsed JSON document replaced or its key dropped
// or renamed (mutate_json_value). Deterministic for a given generator state.
#pragma once

#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace lmlab::test {

// 1 to `max_edits` edits of `s`; `fragments`: the JSON pieces spliced in and put in place of values.
inline std::string mutate_text(std::string s, std::mt19937_64& rng, std::span<const char* const> fragments, int max_edits) {
  const int n = 1 + static_cast<int>(rng() % max_edits);
  for (int i = 0; i < n && !s.empty(); ++i) {
    const size_t at = rng() % s.size();
    switch (rng() % 5) {
      case 0: s[at] = static_cast<char>(rng() & 0xff); break;  // byte flip
      case 1: s.resize(at); break;                               // truncation
      case 2: s.insert(at, fragments[rng() % fragments.size()]); break;
      case 3: s.erase(at, 1 + rng() % 8); break;
      default: {  // a value after some ':' replaced by a fragment
        const size_t colon = s.find(':', at);
        if (colon == std::string::npos) break;
        const size_t end = s.find_first_of(",}", colon + 1);
        s.replace(colon + 1, (end == std::string::npos ? s.size() : end) - colon - 1, fragments[rng() % fragments.size()]);
      }
    }
  }
  return s;
}

// Every JSON pointer in `j`, `at` and below, parents before children.
inline void collect_json_paths(const nlohmann::json& j, const nlohmann::json::json_pointer& at,
                               std::vector<nlohmann::json::json_pointer>& out) {
  out.push_back(at);
  if (j.is_object())
    for (const auto& [key, value] : j.items()) collect_json_paths(value, at / key, out);
  else if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) collect_json_paths(j[i], at / i, out);
}

// A mutation past the JSON layer: one value of the valid JSON document `seed` replaced by a fragment, or its key
// dropped or renamed (a fragment that is a string), so that the reader's own checks, not the JSON parser, meet most
// of them.
inline std::string mutate_json_value(const std::string& seed, std::mt19937_64& rng, std::span<const char* const> fragments) {
  using json = nlohmann::json;
  json doc = json::parse(seed);
  std::vector<json::json_pointer> paths;
  collect_json_paths(doc, json::json_pointer(), paths);
  const json::json_pointer at = paths[1 + rng() % (paths.size() - 1)];  // never the root
  const char* fragment = fragments[rng() % fragments.size()];
  const json value = json::parse(fragment, nullptr, /*allow_exceptions=*/false);
  json& parent = doc[at.parent_pointer()];
  const bool in_object = parent.is_object();
  switch (rng() % 3) {
    case 0:
      if (in_object) {
        parent.erase(at.back());
        break;
      }
      [[fallthrough]];
    case 1:
      if (in_object && value.is_string()) {
        parent[value.get<std::string>()] = doc[at];
        parent.erase(at.back());
        break;
      }
      [[fallthrough]];
    default:
      if (!value.is_discarded()) doc[at] = value;
  }
  return doc.dump();
}

}  // namespace lmlab::test
