// Jinja2 parser: tokens -> syntax tree, with jinja2's operator precedence (or < and < not < comparisons
// < + - < ~ < * / // % < ** < unary; filters and tests bind to the primary before any binary operator).
// Throws lmlab::Error(invalid_input) "NAME:LINE:COL: template syntax error: expected X, got Y".
#pragma once

#include <string>
#include <vector>

#include "template/ast.h"
#include "template/lexer.h"

namespace lmlab::tpl {

Body parse(const std::vector<Token>& tokens, const std::string& source_name);

}  // namespace lmlab::tpl
