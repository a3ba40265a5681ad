// The syntax tree of a parsed template. Nodes are plain structs tagged by kind; the parser builds them and
// the evaluator walks them. Every node keeps the line and column it starts at for runtime errors.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace lmlab::tpl {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  literal,    // value
  name,       // name
  list,       // items
  tuple,      // items
  dict,       // items as key, value pairs: items[2k], items[2k+1]
  attr,       // a.name: items[0], name
  subscript,  // a[b]: items[0], items[1]
  slice,      // a[b:c:d]: items[0], then start/stop/step (null when omitted)
  call,       // f(args): items[0] callee, items[1..] positional, kwargs
  filter,     // a | name(args): items[0] operand (null inside a filter block), items[1..], kwargs
  test,       // a is [not] name(args): items[0] operand, items[1..], negated
  unary,      // op in "-", "+", "not": items[0]
  binary,     // op in + - * / // % ** ~ and or in "not in" == != < <= > >=: items[0], items[1]
  compare,    // a chain a < b <= c: items are the operands, ops the operators between them
  cond,       // items[1] if items[0] else items[2] (items[2] may be null)
};

struct Expr {
  ExprKind kind;
  int line = 0, col = 0;
  Value value;                      // literal
  std::string name;                 // name, attr, filter, test; operator of unary/binary
  std::vector<ExprPtr> items;       // operands (see ExprKind)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;             // test
  std::vector<std::string> ops;     // compare
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  text,       // text
  output,     // {{ expr }}
  if_,        // branches: (cond, body)...; else_body
  for_,       // for targets in expr [if cond]: body [else else_body]
  set,        // set target = expr, or {% set target %}body{% endset %}
  macro,      // macro name(params): body
  break_,
  continue_,
  block,      // a body with no effect of its own ({% generation %}, {% filter %} applies `filter`)
};

struct Param {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind;
  int line = 0, col = 0;
  std::string text;                                  // text; macro name
  ExprPtr expr;                                      // output value; for iterable; set value (null: block set)
  ExprPtr target;                                    // set / for target (name, attr or tuple of names)
  ExprPtr cond;                                      // for ... if cond
  ExprPtr filter;                                    // block with a filter: filter chain, operand null
  std::vector<std::pair<ExprPtr, Body>> branches;    // if / elif
  Body body, else_body;
  std::vector<Param> params;                         // macro
};

}  // namespace lmlab::tpl
