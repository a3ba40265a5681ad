// Regex / literal / per-character patterns and split behaviours, reproducing `tokenizers`' Pattern and
// NormalizedString::split. Why PCRE2: tokenizer.json regexes are written for Oniguruma and use \p{..}
// classes and lookaheads that std::regex lacks; PCRE2 (UTF + UCP, JIT) runs them with the same meaning
// once the few escapes whose Unicode meaning differs are translated (see translate_oniguruma).
// Invariant: subjects are valid UTF-8 (checked once in Tokenizer::encode), so PCRE2_NO_UTF_CHECK is safe
// and keeps repeated matching over one long subject linear.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pattern.h"

#include <pcre2.h>

#include <algorithm>

#include "lmlab/error.h"
#include "text/unicode.h"

namespace lmlab::tok {

namespace {

// Oniguruma's Unicode \s is [\t-\r\x85\p{Z}] (PCRE2 adds U+180E); its \w is letters, marks, decimal
// digits and connector punctuation (PCRE2's is letters, all numbers and '_'); Ruby syntax's \h is a hex
// digit (PCRE2's is horizontal space).
constexpr std::string_view kSpaceBody = "\\t-\\r\\x{85}\\p{Z}";
constexpr std::string_view kWordBody = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
constexpr std::string_view kHexBody = "0-9a-fA-F";

std::string translate_oniguruma(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      std::string_view body;
      bool negated = false;
      switch (d) {
        case 's':
          body = kSpaceBody;
          break;
        case 'S':
          body = kSpaceBody, negated = true;
          break;
        case 'w':
          body = kWordBody;
          break;
        case 'W':
          body = kWordBody, negated = true;
          break;
        case 'h':
          body = kHexBody;
          break;
        case 'H':
          body = kHexBody, negated = true;
          break;
        default:
          break;
      }
      if (body.empty() || (negated && class_depth > 0)) {
        out += c;  // other escapes (and negated classes inside a set) keep their PCRE2 meaning
        out += d;
      } else if (class_depth > 0) {
        out += body;
      } else {
        out += negated ? "[^" : "[";
        out += body;
        out += ']';
      }
      ++i;
      continue;
    }
    if (c == '[') {
      if (class_depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
        const size_t close = p.find(":]", i + 2);
        if (close != std::string_view::npos) {
          out += p.substr(i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      out += c;
      ++class_depth;
      if (class_depth == 1) {  // a leading ']' (after an optional '^') is a literal
        if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
        if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      }
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(std::string_view pattern, const std::string& where) {
  const std::string translated = translate_oniguruma(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // Oniguruma (Ruby syntax) anchors ^ and $ at line boundaries, hence MULTILINE.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &err_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    throw Error(ErrorKind::model_format, where,
                "regex '" + std::string(pattern) + "' does not compile: " + reinterpret_cast<char*>(buf) +
                    " at offset " + std::to_string(err_offset));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter on failure
  code_ = std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

void Regex::find_all(std::string_view text, std::vector<Range>& out) const {
  auto* code = static_cast<pcre2_code*>(code_.get());
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (md == nullptr) throw Error(ErrorKind::out_of_memory, "tokenizer regex", "pcre2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0;
  size_t last_end = std::string_view::npos;
  while (pos <= n) {
    const int rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH, or a resource limit: stop matching this subject
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0], e = ov[1];
    if (s == e && e == last_end) {  // empty match right after the previous one: step one character
      if (pos >= n) break;
      pos += utf8_seq_len(static_cast<unsigned char>(text[pos]));
      continue;
    }
    out.push_back({s, e});
    last_end = e;
    pos = e;
  }
  pcre2_match_data_free(md);
}

Pattern Pattern::literal(std::string s) {
  Pattern p;
  p.literal_ = std::move(s);
  return p;
}

Pattern Pattern::regex(std::string_view pattern, const std::string& where) {
  Pattern p;
  p.regex_ = std::make_shared<Regex>(pattern, where);
  return p;
}

Pattern Pattern::predicate(std::function<bool(char32_t)> is_match) {
  Pattern p;
  p.predicate_ = std::move(is_match);
  return p;
}

void Pattern::find_all(std::string_view text, std::vector<Range>& out) const {
  if (regex_) {
    regex_->find_all(text, out);
  } else if (predicate_) {
    size_t i = 0;
    while (i < text.size()) {
      const size_t start = i;
      const char32_t cp = utf8_next(text, i);
      if (predicate_(cp)) out.push_back({start, i});
    }
  } else if (!literal_.empty()) {
    size_t pos = 0;
    while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
      out.push_back({pos, pos + literal_.size()});
      pos += literal_.size();
    }
  }
}

std::vector<Match> Pattern::find_matches(std::string_view text, bool invert) const {
  std::vector<Match> result;
  if (text.empty()) {
    result.push_back({0, 0, invert});
    return result;
  }
  std::vector<Range> found;
  find_all(text, found);
  size_t prev = 0;
  for (const Range& r : found) {
    if (r.start != prev) result.push_back({prev, r.start, invert});
    result.push_back({r.start, r.end, !invert});
    prev = r.end;
  }
  if (prev != text.size()) result.push_back({prev, text.size(), invert});
  return result;
}

std::vector<Range> split_ranges(const std::vector<Match>& matches, SplitBehavior behavior) {
  std::vector<Range> out;
  out.reserve(matches.size());
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const Match& m : matches) out.push_back({m.start, m.end});
      break;
    case SplitBehavior::removed:
      for (const Match& m : matches)
        if (!m.is_match) out.push_back({m.start, m.end});
      break;
    case SplitBehavior::contiguous: {
      bool prev_match = false;
      for (const Match& m : matches) {
        if (m.is_match == prev_match && !out.empty()) {
          out.back().end = m.end;
        } else {
          out.push_back({m.start, m.end});
        }
        prev_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool prev_match = false;
      for (const Match& m : matches) {
        if (m.is_match && !prev_match && !out.empty()) {
          out.back().end = m.end;
        } else {
          out.push_back({m.start, m.end});
        }
        prev_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool prev_match = false;  // walking backwards: whether the run after this one matched
      for (size_t k = matches.size(); k-- > 0;) {
        const Match& m = matches[k];
        if (m.is_match && !prev_match && !out.empty()) {
          out.back().start = m.start;
        } else {
          out.push_back({m.start, m.end});
        }
        prev_match = m.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  std::erase_if(out, [](const Range& r) { return r.start == r.end; });
  return out;
}

std::string replace_all(std::string_view text, const Pattern& pattern, std::string_view content) {
  std::vector<Range> found;
  pattern.find_all(text, found);
  if (found.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (const Range& r : found) {
    out.append(text.substr(prev, r.start - prev));
    out.append(content);
    prev = r.end;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace lmlab::tok
