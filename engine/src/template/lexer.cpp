// Jinja2 lexer with transformers' settings. The tag/whitespace rules follow jinja2's documented
// semantics: `{%-`/`{{-`/`{#-` strip all whitespace before the tag, `-%}`/`-}}`/`-#}` all whitespace after;
// trim_blocks drops the first newline after `%}` or `#}` (not after `+%}`); lstrip_blocks drops spaces and
// tabs between the start of a line and `{%` or `{#` (not `{%+`). Inside a tag, `}}`/`%}` close it only
// when brackets are balanced, so `{{ {'a': {'b': 1}} }}` works.
#include "template/lexer.h"

#include <algorithm>
#include <cctype>

#include "lmlab/error.h"
#include "text/unicode.h"

namespace lmlab::tpl {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Lexer {
 public:
  Lexer(std::string src, const std::string& name, const LexOptions& opt) : src_(std::move(src)), name_(name), opt_(opt) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      const size_t start = find_tag(pos);
      std::string text = src_.substr(pos, start - pos);
      if (start == src_.size()) {
        push(TokenType::text, std::move(text), pos);
        break;
      }
      const char kind = src_[start + 1];  // '{', '%' or '#'
      const char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (sign == '-') {
        text.erase(std::find_if_not(text.rbegin(), text.rend(), is_ws).base(), text.end());
      } else if (sign != '+' && kind != '{' && opt_.lstrip_blocks) {
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        const bool line_start = pos == 0 || src_[pos - 1] == '\n';
        if ((l_pos > 0 || line_start) &&
            std::all_of(text.begin() + static_cast<std::ptrdiff_t>(l_pos), text.end(),
                        [](char c) { return c == ' ' || c == '\t'; }))
          text.resize(l_pos);
      }
      push(TokenType::text, std::move(text), pos);
      size_t p = start + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = comment(start, p);
      } else if (kind == '%' && raw_block(start, p, pos)) {
        // {% raw %}...{% endraw %}: emitted as text, `pos` is past the end tag
      } else {
        push(kind == '{' ? TokenType::var_begin : TokenType::block_begin, src_.substr(start, 2), start);
        pos = tag(kind, p);
      }
    }
    push(TokenType::eof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t pos) const {
    while (true) {
      const size_t b = src_.find('{', pos);
      if (b == std::string::npos || b + 1 >= src_.size()) return src_.size();
      const char c = src_[b + 1];
      if (c == '{' || c == '%' || c == '#') return b;
      pos = b + 1;
    }
  }

  void push(TokenType t, std::string value, size_t offset) {
    if (t == TokenType::text && value.empty()) return;
    auto [line, col] = where(offset);
    tokens_.push_back({t, std::move(value), line, col});
  }

  std::pair<int, int> where(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    return {static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
  }

  [[noreturn]] void fail(size_t offset, const std::string& msg) const {
    auto [line, col] = where(offset);
    throw Error(ErrorKind::invalid_input, name_ + ":" + std::to_string(line) + ":" + std::to_string(col),
                "template syntax error: " + msg);
  }

  // After a closing `%}` or `#}` at `end` (one past it), with `sign` the character before it.
  size_t after_close(size_t end, char sign) const {
    if (sign == '-') {
      while (end < src_.size() && is_ws(src_[end])) ++end;
    } else if (sign != '+' && opt_.trim_blocks && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    return end;
  }

  size_t comment(size_t start, size_t p) {
    const size_t close = src_.find("#}", p);
    if (close == std::string::npos) fail(start, "unterminated comment, expected '#}'");
    const char sign = close > p ? src_[close - 1] : '\0';
    return after_close(close + 2, sign);
  }

  // Skips spaces; returns the offset after `word` or npos.
  size_t match_word(size_t p, std::string_view word) const {
    while (p < src_.size() && is_ws(src_[p])) ++p;
    if (src_.compare(p, word.size(), word) != 0) return std::string::npos;
    return p + word.size();
  }

  // Offset after `[-]%}` (spaces allowed before), or npos; `sign` gets '-', '+' or 0.
  size_t match_close(size_t p, char& sign) const {
    while (p < src_.size() && is_ws(src_[p])) ++p;
    sign = (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ? src_[p] : '\0';
    if (sign) ++p;
    return src_.compare(p, 2, "%}") == 0 ? p + 2 : std::string::npos;
  }

  // `{% raw %}` at `start` (p after its sign): the text up to `{% endraw %}` is literal.
  bool raw_block(size_t start, size_t p, size_t& pos) {
    char sign = '\0';
    size_t q = match_word(p, "raw");
    if (q == std::string::npos || (q < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[q])) || src_[q] == '_')))
      return false;
    q = match_close(q, sign);
    if (q == std::string::npos) fail(start, "expected '%}' after 'raw'");
    size_t body = after_close(q, sign);
    for (size_t s = src_.find("{%", body); s != std::string::npos; s = src_.find("{%", s + 2)) {
      const char end_sign = s + 2 < src_.size() ? src_[s + 2] : '\0';
      size_t e = s + 2 + ((end_sign == '-' || end_sign == '+') ? 1 : 0);
      e = match_word(e, "endraw");
      if (e == std::string::npos) continue;
      char close_sign = '\0';
      e = match_close(e, close_sign);
      if (e == std::string::npos) continue;
      std::string text = src_.substr(body, s - body);
      if (end_sign == '-') text.erase(std::find_if_not(text.rbegin(), text.rend(), is_ws).base(), text.end());
      push(TokenType::text, std::move(text), body);
      pos = after_close(e, close_sign);
      return true;
    }
    fail(start, "unterminated raw block, expected '{% endraw %}'");
  }

  // Lexes the expression tokens of a {{ }} or {% %} tag starting at p; returns the offset after it.
  size_t tag(char kind, size_t p) {
    const char close_char = kind == '{' ? '}' : '%';
    const size_t open = p;
    int depth = 0;
    while (true) {
      while (p < src_.size() && is_ws(src_[p])) ++p;
      if (p >= src_.size())
        fail(open, std::string("unexpected end of template, expected '") + close_char + "}'");
      const char c = src_[p];
      if (depth == 0) {
        const char sign = (c == '-' || c == '+') ? c : '\0';
        const size_t q = p + (sign ? 1 : 0);
        if (q + 1 < src_.size() && src_[q] == close_char && src_[q + 1] == '}' && (sign != '+' || kind == '%')) {
          push(kind == '{' ? TokenType::var_end : TokenType::block_end, std::string(1, close_char) + "}", p);
          if (kind == '{') {
            size_t end = q + 2;
            if (sign == '-')
              while (end < src_.size() && is_ws(src_[end])) ++end;
            return end;
          }
          return after_close(q + 2, sign);
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = p;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        push(TokenType::name, src_.substr(p, e - p), p);
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = number(p);
      } else if (c == '\'' || c == '"') {
        p = string(p);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                           ">",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|", "="};
        const char* found = nullptr;
        for (const char* op : kOps)
          if (src_.compare(p, std::char_traits<char>::length(op), op) == 0) {
            found = op;
            break;
          }
        if (!found) fail(p, std::string("unexpected character '") + c + "'");
        const std::string op = found;
        if (op == "(" || op == "[" || op == "{") {
          ++depth;
        } else if (op == ")" || op == "]" || op == "}") {
          if (depth == 0) fail(p, "unexpected '" + op + "'");
          --depth;
        }
        push(TokenType::op, op, p);
        p += op.size();
      }
    }
  }

  size_t number(size_t p) {
    const size_t start = p;
    auto digits = [&] {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
    };
    digits();
    bool is_float = false;
    const bool after_dot = !tokens_.empty() && tokens_.back().type == TokenType::op && tokens_.back().value == ".";
    if (!after_dot && p + 1 < src_.size() && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      is_float = true;
      ++p;
      digits();
    }
    if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        p = q;
        digits();
      }
    }
    std::string text = src_.substr(start, p - start);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    push(is_float ? TokenType::floating : TokenType::integer, std::move(text), start);
    return p;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A quoted literal with Python's unicode-escape rules (jinja2 decodes string literals that way).
  size_t string(size_t p) {
    const size_t start = p;
    const char quote = src_[p++];
    std::string out;
    while (true) {
      if (p >= src_.size()) fail(start, "unterminated string literal");
      const char c = src_[p];
      if (c == quote) {
        push(TokenType::string, std::move(out), start);
        return p + 1;
      }
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) fail(start, "unterminated string literal");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const int h = p + k < src_.size() ? hex_value(src_[p + k]) : -1;
            if (h < 0) fail(p - 2, std::string("truncated \\") + e + " escape");
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail(p - 2, "invalid code point in escape");
          tok::utf8_append(out, cp);
          p += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[p++] - '0');
            tok::utf8_append(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
  }

  std::string src_;
  const std::string& name_;
  LexOptions opt_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const std::string& source_name, const LexOptions& opt) {
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!opt.keep_trailing_newline && !src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src), source_name, opt).run();
}

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::text: return "template text";
    case TokenType::var_begin: return "'{{'";
    case TokenType::var_end: return "'}}'";
    case TokenType::block_begin: return "'{%'";
    case TokenType::block_end: return "'%}'";
    case TokenType::name: return "'" + t.value + "'";
    case TokenType::string: return "string literal";
    case TokenType::integer:
    case TokenType::floating: return "number " + t.value;
    case TokenType::op: return "'" + t.value + "'";
    case TokenType::eof: return "end of template";
  }
  return "token";
}

}  // namespace lmlab::tpl
