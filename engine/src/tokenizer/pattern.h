// Pattern matching shared by normalizers, pre-tokenizers and decoders: a PCRE2 regex with the match
// iteration rules of `tokenizers` (Oniguruma: non-overlapping, leftmost, an empty match right after the
// previous match is skipped), literal-string and per-character patterns, and the split behaviours
// (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous).
// Invariants: byte offsets always fall on UTF-8 character boundaries; the Match list returned by
// find_matches covers the whole input in order.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lmlab::tok {

struct Range {
  size_t start = 0;
  size_t end = 0;
};

// A run of the input and whether it matched the pattern.
struct Match {
  size_t start = 0;
  size_t end = 0;
  bool is_match = false;
};

class Regex {
 public:
  // `pattern` uses Oniguruma (Ruby) syntax as written in tokenizer.json; \s \S \w \W \h \H are
  // translated to their Oniguruma Unicode meaning. Throws lmlab::Error(model_format) naming `where`.
  Regex(std::string_view pattern, const std::string& where);
  // Non-overlapping matches of `text` (valid UTF-8) in order.
  void find_all(std::string_view text, std::vector<Range>& out) const;

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8, freed with pcre2_code_free
};

// What a pattern in tokenizer.json ({"String": s} or {"Regex": r}) finds.
class Pattern {
 public:
  static Pattern literal(std::string s);
  static Pattern regex(std::string_view pattern, const std::string& where);
  static Pattern predicate(std::function<bool(char32_t)> is_match);  // every matching char on its own

  void find_all(std::string_view text, std::vector<Range>& out) const;
  // The whole input as alternating matched / unmatched runs (an empty input gives one empty run).
  std::vector<Match> find_matches(std::string_view text, bool invert = false) const;

 private:
  std::string literal_;
  std::shared_ptr<Regex> regex_;
  std::function<bool(char32_t)> predicate_;
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Applies a split behaviour to find_matches() output; returns the kept, non-empty ranges.
std::vector<Range> split_ranges(const std::vector<Match>& matches, SplitBehavior behavior);

// Replaces every match of `pattern` in `text` by `content`.
std::string replace_all(std::string_view text, const Pattern& pattern, std::string_view content);

}  // namespace lmlab::tok
