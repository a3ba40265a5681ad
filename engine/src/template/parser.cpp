// Recursive-descent Jinja2 parser (statements and expressions). Nesting is bounded (kMaxDepth) so that
// malformed or hostile templates fail with an error instead of exhausting the stack.
#include "template/parser.h"

#include <charconv>
#include <cstdlib>
#include <set>

#include "lmlab/error.h"

namespace lmlab::tpl {

namespace {

constexpr int kMaxDepth = 200;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& name) : t_(tokens), name_(name) {}

  Body parse_template() {
    Body body = parse_body({}, nullptr);
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  void advance() {
    if (cur().type != TokenType::eof) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == TokenType::op && cur().value == op; }
  bool is_name(const char* n) const { return cur().type == TokenType::name && cur().value == n; }

  [[noreturn]] void fail_at(const Token& t, const std::string& msg) const {
    throw Error(ErrorKind::invalid_input, name_ + ":" + std::to_string(t.line) + ":" + std::to_string(t.col),
                "template syntax error: " + msg);
  }
  [[noreturn]] void expected(const std::string& what) const { fail_at(cur(), "expected " + what + ", got " + describe(cur())); }

  void expect_op(const char* op) {
    if (!is_op(op)) expected(std::string("'") + op + "'");
    advance();
  }
  std::string expect_name() {
    if (cur().type != TokenType::name) expected("a name");
    std::string n = cur().value;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != TokenType::block_end) expected("'%}'");
    advance();
  }

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxDepth) p.fail_at(p.cur(), "template nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprPtr node(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // ---- statements ----
  // Parses until `{% <one of end_tags>` (left unconsumed) or the end of the template.
  Body parse_body(const std::set<std::string>& end_tags, const Token* opened_by) {
    DepthGuard guard(*this);
    if (opened_by) open_.push_back({&end_tags, opened_by});
    struct Pop {
      Parser& p;
      bool active;
      ~Pop() {
        if (active) p.open_.pop_back();
      }
    } pop{*this, opened_by != nullptr};
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::eof) {
        if (!end_tags.empty()) {
          std::string names;
          for (const auto& n : end_tags) names += (names.empty() ? "'" : " or '") + n + "'";
          fail_at(t, "unexpected end of template, expected " + names + " to close the block opened at line " +
                         std::to_string(opened_by->line) + ", column " + std::to_string(opened_by->col));
        }
        return body;
      }
      if (t.type == TokenType::text) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::text;
        s->text = t.value;
        body.push_back(std::move(s));
        advance();
      } else if (t.type == TokenType::var_begin) {
        advance();
        auto s = stmt(StmtKind::output, t);
        s->expr = parse_tuple();
        if (cur().type != TokenType::var_end) expected("'}}'");
        advance();
        body.push_back(std::move(s));
      } else if (t.type == TokenType::block_begin) {
        const Token& tag = peek();
        if (tag.type == TokenType::name && end_tags.count(tag.value)) return body;
        advance();
        body.push_back(parse_statement(t));
      } else {
        expected("template text or a tag");
      }
    }
  }

  StmtPtr stmt(StmtKind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->col = at.col;
    return s;
  }

  // Consumes `{% name %}` where name is the expected end (or middle) tag.
  void end_tag(const std::string& name) {
    if (cur().type != TokenType::block_begin) expected("'{% " + name + " %}'");
    advance();
    if (!is_name(name.c_str())) expected("'" + name + "'");
    advance();
    expect_block_end();
  }

  StmtPtr parse_statement(const Token& open) {
    if (cur().type != TokenType::name) expected("a tag name");
    const Token& tag = cur();
    const std::string name = tag.value;
    advance();
    if (name == "if") return parse_if(open);
    if (name == "for") return parse_for(open);
    if (name == "set") return parse_set(open);
    if (name == "macro") return parse_macro(open);
    if (name == "break" || name == "continue") {
      expect_block_end();
      return stmt(name == "break" ? StmtKind::break_ : StmtKind::continue_, open);
    }
    if (name == "generation" || name == "filter") {
      auto s = stmt(StmtKind::block, open);
      if (name == "filter") s->filter = parse_filter_chain(nullptr, tag);
      expect_block_end();
      const std::string end = "end" + name;
      s->body = parse_body({end}, &open);
      end_tag(end);
      return s;
    }
    static const std::set<std::string> kUnsupported = {"call", "raw", "include", "import", "from", "extends",
                                                       "block", "with", "do", "autoescape"};
    if (kUnsupported.count(name)) fail_at(tag, "the '" + name + "' tag is not supported");
    std::string msg = "unknown tag '" + name + "'";
    if (!open_.empty()) {  // most likely a misplaced end tag: say what the innermost block needs
      std::string names;
      for (const auto& n : *open_.back().first) names += (names.empty() ? "'" : " or '") + n + "'";
      msg += "; expected " + names + " to close the block opened at line " + std::to_string(open_.back().second->line) +
             ", column " + std::to_string(open_.back().second->col);
    }
    fail_at(tag, msg);
  }

  StmtPtr parse_if(const Token& open) {
    auto s = stmt(StmtKind::if_, open);
    ExprPtr cond = parse_tuple(/*with_condexpr=*/false);  // as jinja2: `{% if a if b else c %}` is an error
    expect_block_end();
    while (true) {
      Body body = parse_body({"elif", "else", "endif"}, &open);
      s->branches.emplace_back(std::move(cond), std::move(body));
      advance();  // {%
      const std::string tag = cur().value;
      advance();
      if (tag == "elif") {
        cond = parse_tuple(/*with_condexpr=*/false);
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (tag == "else") {
        s->else_body = parse_body({"endif"}, &open);
        end_tag("endif");
      }
      return s;
    }
  }

  // for targets: `x`, `k, v`, `(k, v)`.
  ExprPtr parse_assign_target(bool allow_attr) {
    const Token& at = cur();
    if (is_op("(")) {
      advance();
      ExprPtr t = parse_assign_target(false);
      expect_op(")");
      return t;
    }
    auto first = node(ExprKind::name, at);
    first->name = expect_name();
    if (allow_attr && is_op(".")) {
      advance();
      auto a = node(ExprKind::attr, at);
      a->name = expect_name();
      a->items.push_back(std::move(first));
      return a;
    }
    if (!is_op(",")) return first;
    auto tuple = node(ExprKind::tuple, at);
    tuple->items.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (cur().type != TokenType::name) break;
      auto n = node(ExprKind::name, cur());
      n->name = expect_name();
      tuple->items.push_back(std::move(n));
    }
    return tuple;
  }

  StmtPtr parse_for(const Token& open) {
    auto s = stmt(StmtKind::for_, open);
    s->target = parse_assign_target(false);
    if (!is_name("in")) expected("'in'");
    advance();
    s->expr = parse_tuple(/*with_condexpr=*/false);
    if (is_name("if")) {
      advance();
      s->cond = parse_expression();
    }
    if (is_name("recursive")) fail_at(cur(), "recursive loops are not supported");
    expect_block_end();
    s->body = parse_body({"else", "endfor"}, &open);
    if (peek().value == "else") {
      end_tag("else");
      s->else_body = parse_body({"endfor"}, &open);
    }
    end_tag("endfor");
    return s;
  }

  StmtPtr parse_set(const Token& open) {
    auto s = stmt(StmtKind::set, open);
    s->target = parse_assign_target(true);
    if (is_op("=")) {
      advance();
      s->expr = parse_tuple();
      expect_block_end();
      return s;
    }
    if (s->target->kind != ExprKind::name) expected("'='");
    if (is_op("|")) s->filter = parse_filter_chain(nullptr, cur());
    expect_block_end();
    s->body = parse_body({"endset"}, &open);
    end_tag("endset");
    return s;
  }

  StmtPtr parse_macro(const Token& open) {
    auto s = stmt(StmtKind::macro, open);
    s->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      Param p;
      p.name = expect_name();
      if (is_op("=")) {
        advance();
        p.default_value = parse_expression();
      }
      s->params.push_back(std::move(p));
    }
    advance();
    expect_block_end();
    s->body = parse_body({"endmacro"}, &open);
    end_tag("endmacro");
    return s;
  }

  // ---- expressions ----
  ExprPtr parse_tuple(bool with_condexpr = true) {
    const Token& at = cur();
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto tuple = node(ExprKind::tuple, at);
    tuple->items.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (cur().type == TokenType::var_end || cur().type == TokenType::block_end || is_op(")")) break;
      tuple->items.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    DepthGuard guard(*this);
    const Token& at = cur();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      advance();
      auto c = node(ExprKind::cond, at);
      ExprPtr test = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        advance();
        other = parse_expression();
      }
      c->items.push_back(std::move(test));
      c->items.push_back(std::move(e));
      c->items.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, const Token& at) {
    auto b = node(ExprKind::binary, at);
    b->name = op;
    b->items.push_back(std::move(l));
    b->items.push_back(std::move(r));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      const Token& at = cur();
      advance();
      l = binary("or", std::move(l), parse_and(), at);
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      const Token& at = cur();
      advance();
      l = binary("and", std::move(l), parse_not(), at);
    }
    return l;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      auto u = node(ExprKind::unary, cur());
      advance();
      u->name = "not";
      u->items.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = cur();
    ExprPtr l = parse_math1();
    ExprPtr chain;
    while (true) {
      const Token& at = cur();
      std::string op;
      if (cur().type == TokenType::op &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
        op = cur().value;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == TokenType::name && peek().value == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        return chain ? std::move(chain) : std::move(l);
      }
      if (!chain) {  // a single comparison is a plain binary node; a chain a < b < c becomes `compare`
        ExprPtr r = parse_math1();
        if (!(is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">=") || is_name("in") ||
              (is_name("not") && peek().type == TokenType::name && peek().value == "in"))) {
          return binary(op, std::move(l), std::move(r), at);
        }
        chain = node(ExprKind::compare, start);
        chain->items.push_back(std::move(l));
        chain->items.push_back(std::move(r));
        chain->ops.push_back(op);
        continue;
      }
      chain->ops.push_back(op);
      chain->items.push_back(parse_math1());
    }
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = cur();
      const std::string op = at.value;
      advance();
      l = binary(op, std::move(l), parse_concat(), at);
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      const Token& at = cur();
      advance();
      l = binary("~", std::move(l), parse_math2(), at);
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = cur();
      const std::string op = at.value;
      advance();
      l = binary(op, std::move(l), parse_pow(), at);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      const Token& at = cur();
      advance();
      l = binary("**", std::move(l), parse_unary(true), at);
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(ExprKind::unary, cur());
      e->name = cur().value;
      advance();
      e->items.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filter_expr(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    DepthGuard guard(*this);
    const Token& at = cur();
    switch (at.type) {
      case TokenType::name: {
        advance();
        const std::string& n = at.value;
        if (n == "true" || n == "True") return literal(Value(true), at);
        if (n == "false" || n == "False") return literal(Value(false), at);
        if (n == "none" || n == "None") return literal(Value::none(), at);
        auto e = node(ExprKind::name, at);
        e->name = n;
        return e;
      }
      case TokenType::string: {
        std::string s;
        while (cur().type == TokenType::string) {
          s += cur().value;
          advance();
        }
        return literal(Value(std::move(s)), at);
      }
      case TokenType::integer: {
        advance();
        int64_t v = 0;
        auto [p, ec] = std::from_chars(at.value.data(), at.value.data() + at.value.size(), v);
        if (ec != std::errc()) fail_at(at, "integer literal out of range: " + at.value);
        return literal(Value(v), at);
      }
      case TokenType::floating:
        advance();
        return literal(Value(std::strtod(at.value.c_str(), nullptr)), at);
      case TokenType::op:
        if (at.value == "(") {
          advance();
          if (is_op(")")) {
            advance();
            return node(ExprKind::tuple, at);
          }
          ExprPtr e = parse_expression();
          if (is_op(",")) {
            auto t = node(ExprKind::tuple, at);
            t->items.push_back(std::move(e));
            while (is_op(",")) {
              advance();
              if (is_op(")")) break;
              t->items.push_back(parse_expression());
            }
            e = std::move(t);
          }
          expect_op(")");
          return e;
        }
        if (at.value == "[") {
          advance();
          auto l = node(ExprKind::list, at);
          while (!is_op("]")) {
            if (!l->items.empty()) expect_op(",");
            if (is_op("]")) break;
            l->items.push_back(parse_expression());
          }
          advance();
          return l;
        }
        if (at.value == "{") {
          advance();
          auto d = node(ExprKind::dict, at);
          while (!is_op("}")) {
            if (!d->items.empty()) expect_op(",");
            if (is_op("}")) break;
            d->items.push_back(parse_expression());
            expect_op(":");
            d->items.push_back(parse_expression());
          }
          advance();
          return d;
        }
        break;
      default: break;
    }
    expected("an expression");
  }

  ExprPtr literal(Value v, const Token& at) {
    auto e = node(ExprKind::literal, at);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token& at = cur();
      if (is_op(".")) {
        advance();
        if (cur().type == TokenType::integer) {
          auto s = node(ExprKind::subscript, at);
          s->items.push_back(std::move(e));
          s->items.push_back(parse_primary());
          e = std::move(s);
        } else {
          auto a = node(ExprKind::attr, at);
          a->name = expect_name();
          a->items.push_back(std::move(e));
          e = std::move(a);
        }
      } else if (is_op("[")) {
        advance();
        e = parse_subscript(std::move(e), at);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), ExprKind::call, at);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
    ExprPtr parts[3];
    int n = 0;
    bool is_slice = false;
    while (true) {
      if (!is_op(":") && !is_op("]")) parts[n] = parse_expression();
      if (is_op(":")) {
        is_slice = true;
        if (++n > 2) expected("']'");
        advance();
        continue;
      }
      expect_op("]");
      break;
    }
    auto s = node(is_slice ? ExprKind::slice : ExprKind::subscript, at);
    s->items.push_back(std::move(obj));
    if (!is_slice && !parts[0]) fail_at(at, "empty subscript");
    for (int k = 0; k < (is_slice ? 3 : 1); ++k) s->items.push_back(std::move(parts[k]));
    return s;
  }

  // `(args)` after a callee, filter or test; fills items[1..] and kwargs of `e`.
  void parse_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (cur().type == TokenType::name && peek().type == TokenType::op && peek().value == "=") {
        std::string k = cur().value;
        advance();
        advance();
        e.kwargs.emplace_back(std::move(k), parse_expression());
      } else {
        if (!e.kwargs.empty()) fail_at(cur(), "positional argument follows keyword argument");
        e.items.push_back(parse_expression());
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee, ExprKind kind, const Token& at) {
    auto c = node(kind, at);
    c->items.push_back(std::move(callee));
    parse_args(*c);
    return c;
  }

  // `| name(args) | name ...` applied to `operand` (null for {% filter %} / {% set x | f %}).
  ExprPtr parse_filter_chain(ExprPtr operand, const Token& at) {
    ExprPtr e = std::move(operand);
    bool first = true;
    while (is_op("|") || (first && !e)) {
      if (is_op("|")) advance();
      first = false;
      auto f = node(ExprKind::filter, at);
      f->name = expect_name();
      while (is_op(".")) {
        advance();
        f->name += '.';
        f->name += expect_name();
      }
      f->items.push_back(std::move(e));
      if (is_op("(")) parse_args(*f);
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      const Token& at = cur();
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e), at);
      } else if (is_name("is")) {
        advance();
        auto t = node(ExprKind::test, at);
        if (is_name("not")) {
          advance();
          t->negated = true;
        }
        t->name = expect_name();
        t->items.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(*t);
        } else {
          const TokenType ct = cur().type;
          const bool starts_arg = ct == TokenType::name || ct == TokenType::string || ct == TokenType::integer ||
                                  ct == TokenType::floating || is_op("(") || is_op("[") || is_op("{");
          if (starts_arg && !is_name("else") && !is_name("or") && !is_name("and"))
            t->items.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), ExprKind::call, at);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& t_;
  const std::string& name_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::vector<std::pair<const std::set<std::string>*, const Token*>> open_;  // blocks being parsed
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& source_name) {
  return Parser(tokens, source_name).parse_template();
}

}  // namespace lmlab::tpl
