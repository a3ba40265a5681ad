// Walks a parsed template and renders it against a context of variables. One Evaluator per render call
// (it holds the scopes and the output buffer); the syntax tree is shared and never modified.
// Bounds: macro recursion depth, total loop iterations and output size are capped so that a hostile
// template fails with an error instead of hanging or exhausting memory.
#pragma once

#include <string>

#include "template/ast.h"

namespace lmlab::tpl {

// Throws lmlab::Error(invalid_input) naming `source_name`, line and column; a raise_exception()
// message is carried verbatim ("... raise_exception: MESSAGE").
std::string render(const Body& root, const std::string& source_name, Dict context);

}  // namespace lmlab::tpl
