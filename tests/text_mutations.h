// Seeded mutations of a valid text document for the fuzz tests of parsers of outside input (request bodies,
// scenario files): byte flips, truncations, spliced fragments, erased runs, and a value after some ':' replaced by
// a fragment. Deterministic for a given generator state.
#pragma once

#include <random>
#include <span>
#include <string>

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

}  // namespace lmlab::test
