// Jinja2 lexer: splits template source into text and tag tokens, applying the whitespace rules that
// transformers configures (trim_blocks, lstrip_blocks, `-`/`+` markers, one trailing newline dropped,
// newlines normalised to \n), and lexes the expressions inside {{ }} and {% %}.
// Invariants: always terminates (every step consumes input); errors name line and column.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lmlab::tpl {

enum class TokenType {
  text,         // literal output between tags
  var_begin,    // {{
  var_end,      // }}
  block_begin,  // {%
  block_end,    // %}
  name,
  string,       // value holds the decoded literal
  integer,
  floating,
  op,           // one of + - * / // % ** ~ == != < <= > >= ( ) [ ] { } , . : | =
  eof,
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1, col = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws lmlab::Error(invalid_input) naming `source_name`, line and column.
std::vector<Token> lex(std::string_view source, const std::string& source_name, const LexOptions& opt = {});

// Human-readable description of a token for "expected X, got Y" messages.
std::string describe(const Token& t);

}  // namespace lmlab::tpl
