// The template evaluator: statements (output, if, for with loop variables and break/continue, set
// with namespace attributes, macros) and expressions (operators with Python semantics, filters, tests,
// calls). Scoping follows jinja2: a for loop's body gets a fresh scope per iteration, so `set` inside a
// loop does not leak out (hence namespace()); `if` creates no scope; a macro sees the template's
// top-level scope plus its own arguments.
#include "template/evaluator.h"

#include <unordered_map>

#include "lmlab/error.h"
#include "template/builtins.h"

namespace lmlab::tpl {

namespace {

constexpr int kMaxMacroDepth = 100;
constexpr int64_t kMaxLoopIterations = 1'000'000;  // ~0.5 s; real chat templates need thousands
constexpr size_t kMaxOutputBytes = size_t{256} << 20;

using Scope = std::unordered_map<std::string, Value>;

enum class Flow { normal, break_, continue_ };

// An EvalError already carrying its location (so outer nodes do not re-wrap it).
struct LocatedError {
  int line, col;
  std::string message;
  bool raised;
};

class Evaluator {
 public:
  Evaluator(const std::string& source_name) : name_(source_name) {}

  std::string run(const Body& root, Dict context) {
    Scope top;
    for (auto& [k, v] : global_functions().items) top[k] = std::move(v);
    for (auto& [k, v] : context.items) top[k] = std::move(v);
    scopes_.push_back(std::move(top));
    try {
      exec_body(root);
    } catch (const std::logic_error& e) {  // e.g. std::out_of_range from a numeric conversion
      throw Error(ErrorKind::invalid_input, name_, std::string("template error: ") + e.what());
    } catch (const LocatedError& e) {
      const std::string where = name_ + ":" + std::to_string(e.line) + ":" + std::to_string(e.col);
      throw Error(ErrorKind::invalid_input, where, (e.raised ? "raise_exception: " : "template error: ") + e.message);
    }
    return std::move(out_);
  }

 private:
  // ---- scopes ----
  Value lookup(const std::string& n) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(n);
      if (f != it->end()) return f->second;
    }
    return Value::undefined("'" + n + "' is undefined");
  }

  template <typename F>
  auto located(int line, int col, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const RaisedError& e) {
      throw LocatedError{line, col, e.what(), true};
    } catch (const EvalError& e) {
      throw LocatedError{line, col, e.what(), false};
    }
  }

  void emit(const std::string& s) {
    out_ += s;
    if (out_.size() > kMaxOutputBytes) throw EvalError("rendered text exceeds " + std::to_string(kMaxOutputBytes >> 20) + " MiB");
  }

  // ---- statements ----
  Flow exec_body(const Body& body) {
    for (const auto& s : body) {
      const Flow f = exec(*s);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  Flow exec(const Stmt& s) {
    return located(s.line, s.col, [&] { return exec_inner(s); });
  }

  Flow exec_inner(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::text: emit(s.text); return Flow::normal;
      case StmtKind::output: emit(to_str(eval(*s.expr))); return Flow::normal;
      case StmtKind::if_:
        for (const auto& [cond, body] : s.branches)
          if (eval(*cond).truthy()) return exec_body(body);
        return exec_body(s.else_body);
      case StmtKind::for_: return exec_for(s);
      case StmtKind::set: {
        Value v;
        if (s.expr) {
          v = eval(*s.expr);
        } else {
          v = Value(capture(s.body));
          if (s.filter) v = apply_filters(*s.filter, v);
        }
        assign(*s.target, v);
        return Flow::normal;
      }
      case StmtKind::macro: define_macro(s); return Flow::normal;
      case StmtKind::break_: return Flow::break_;
      case StmtKind::continue_: return Flow::continue_;
      case StmtKind::block:
        if (s.filter) {
          emit(to_str(apply_filters(*s.filter, Value(capture(s.body)))));
          return Flow::normal;
        }
        return exec_body(s.body);
    }
    return Flow::normal;
  }

  std::string capture(const Body& body) {
    std::string saved = std::move(out_);
    out_.clear();
    const Flow f = exec_body(body);
    std::string captured = std::move(out_);
    out_ = std::move(saved);
    if (f != Flow::normal) throw EvalError("break/continue outside of a loop");
    return captured;
  }

  void assign(const Expr& target, const Value& v) {
    if (target.kind == ExprKind::name) {
      scopes_.back()[target.name] = v;
    } else if (target.kind == ExprKind::attr) {
      const Value obj = eval(*target.items[0]);
      if (!obj.is_dict() || !obj.as_dict().is_namespace)
        throw EvalError("cannot assign attribute on non-namespace object");
      obj.as_dict().set(target.name, v);
    } else {  // tuple of names
      const List items = v.is_list() ? v.as_list() : List{};
      if (!v.is_list() || items.size() != target.items.size())
        throw EvalError("cannot unpack " + v.type_name() + " into " + std::to_string(target.items.size()) + " names");
      for (size_t k = 0; k < items.size(); ++k) assign(*target.items[k], items[k]);
    }
  }

  Flow exec_for(const Stmt& s) {
    const Value seq = eval(*s.expr);
    List items;
    if (seq.is_dict()) {
      for (const auto& kv : seq.as_dict().items) items.emplace_back(kv.first);
    } else if (seq.is_list() || seq.is_undefined() || seq.is_string()) {
      if (!seq.is_undefined()) items = apply_filter("list", seq, {}).as_list();
    } else {
      throw EvalError("'" + seq.type_name() + "' object is not iterable");
    }
    if (s.cond) {  // `for x in xs if cond`: the loop variables count only the kept items
      List kept;
      for (const Value& item : items) {
        scopes_.emplace_back();
        assign(*s.target, item);
        const bool keep = eval(*s.cond).truthy();
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(s.else_body);
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      if (++iterations_ > kMaxLoopIterations) throw EvalError("too many loop iterations");
      Dict loop;
      loop.items.reserve(11);
      loop.items.emplace_back("index", Value(i + 1));
      loop.items.emplace_back("index0", Value(i));
      loop.items.emplace_back("revindex", Value(n - i));
      loop.items.emplace_back("revindex0", Value(n - i - 1));
      loop.items.emplace_back("first", Value(i == 0));
      loop.items.emplace_back("last", Value(i == n - 1));
      loop.items.emplace_back("length", Value(n));
      loop.items.emplace_back("depth", Value(int64_t{1}));
      loop.items.emplace_back("depth0", Value(int64_t{0}));
      loop.items.emplace_back("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item"));
      loop.items.emplace_back("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item"));
      scopes_.emplace_back();
      scopes_.back()["loop"] = Value::dict(std::move(loop));
      assign(*s.target, items[static_cast<size_t>(i)]);
      Flow f;
      try {
        f = exec_body(s.body);
      } catch (...) {
        scopes_.pop_back();
        throw;
      }
      scopes_.pop_back();
      if (f == Flow::break_) break;
    }
    return Flow::normal;
  }

  void define_macro(const Stmt& s) {
    const Stmt* m = &s;
    scopes_.back()[s.text] = Value::function(s.text, [this, m](const Args& a) { return call_macro(*m, a); });
  }

  Value call_macro(const Stmt& m, const Args& a) {
    if (macro_depth_ >= kMaxMacroDepth) throw EvalError("macro recursion too deep");
    if (a.positional.size() > m.params.size())
      throw EvalError("macro '" + m.text + "' takes not more than " + std::to_string(m.params.size()) + " argument(s)");
    Scope frame;
    for (const auto& [k, v] : a.keyword) {
      bool known = false;
      for (const auto& p : m.params) known = known || p.name == k;
      if (!known) throw EvalError("macro '" + m.text + "' got an unexpected keyword argument '" + k + "'");
    }
    // The macro runs on [a copy of the top-level scope, its own frame]: it sees globals and its
    // arguments, not the caller's loop variables.
    std::vector<Scope> saved;
    saved.swap(scopes_);
    scopes_.push_back(saved.front());
    scopes_.push_back(std::move(frame));
    ++macro_depth_;
    std::string result;
    try {
      for (size_t k = 0; k < m.params.size(); ++k) {
        const Value* v = a.get(k, m.params[k].name);
        if (v) {
          scopes_.back()[m.params[k].name] = *v;
        } else if (m.params[k].default_value) {
          scopes_.back()[m.params[k].name] = eval(*m.params[k].default_value);
        } else {
          scopes_.back()[m.params[k].name] = Value::undefined("'" + m.params[k].name + "' is undefined");
        }
      }
      result = capture(m.body);
    } catch (...) {
      --macro_depth_;
      scopes_.swap(saved);
      throw;
    }
    --macro_depth_;
    scopes_.swap(saved);
    return Value(std::move(result));
  }

  // ---- expressions ----
  Value eval(const Expr& e) {
    return located(e.line, e.col, [&] { return eval_inner(e); });
  }

  Args eval_args(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.items.size(); ++k) a.positional.push_back(eval(*e.items[k]));
    for (const auto& [k, v] : e.kwargs) a.keyword.emplace_back(k, eval(*v));
    return a;
  }

  // Applies a filter chain whose innermost operand is null to `v`.
  Value apply_filters(const Expr& f, const Value& v) {
    const Value in = f.items[0] ? apply_filters(*f.items[0], v) : v;
    return apply_filter(f.name, in, eval_args(f, 1));
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case ExprKind::literal: return e.value;
      case ExprKind::name: return lookup(e.name);
      case ExprKind::list:
      case ExprKind::tuple: {
        List items;
        for (const auto& i : e.items) items.push_back(eval(*i));
        return Value::list(std::move(items), e.kind == ExprKind::tuple);
      }
      case ExprKind::dict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
          const Value key = eval(*e.items[k]);
          if (!key.is_string()) throw EvalError("dict keys must be strings here, got " + key.type_name());
          d.set(key.as_string(), eval(*e.items[k + 1]));
        }
        return Value::dict(std::move(d));
      }
      case ExprKind::attr: return get_attribute(eval(*e.items[0]), e.name);
      case ExprKind::subscript: return get_item(eval(*e.items[0]), eval(*e.items[1]));
      case ExprKind::slice: {
        const Value obj = eval(*e.items[0]);
        Value parts[3];
        const Value* p[3] = {nullptr, nullptr, nullptr};
        for (int k = 0; k < 3; ++k)
          if (e.items[static_cast<size_t>(k) + 1]) {
            parts[k] = eval(*e.items[static_cast<size_t>(k) + 1]);
            p[k] = &parts[k];
          }
        return get_slice(obj, p[0], p[1], p[2]);
      }
      case ExprKind::call: return eval_call(e);
      case ExprKind::filter: {
        if (e.name == "default" || e.name == "d") {  // the one filter that takes undefined happily
          Value v = eval(*e.items[0]);
          return apply_filter("default", v, eval_args(e, 1));
        }
        return apply_filter(e.name, eval(*e.items[0]), eval_args(e, 1));
      }
      case ExprKind::test: {
        const Value v = eval(*e.items[0]);
        const bool r = apply_test(e.name, v, eval_args(e, 1));
        return Value(e.negated ? !r : r);
      }
      case ExprKind::unary: {
        const Value v = eval(*e.items[0]);
        if (e.name == "not") return Value(!v.truthy());
        if (!v.is_number()) throw EvalError("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
        if (e.name == "+") return v.is_bool() ? Value(v.as_int()) : v;
        if (v.is_int()) {
          if (v.as_int() == INT64_MIN) throw EvalError("integer overflow");
          return Value(-v.as_int());
        }
        return Value(-v.as_double());
      }
      case ExprKind::binary: return eval_binary(e);
      case ExprKind::compare: {  // Python's chained comparison: each operand evaluated once
        Value l = eval(*e.items[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value r = eval(*e.items[k + 1]);
          if (!compare_op(e.ops[k], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case ExprKind::cond:
        if (eval(*e.items[0]).truthy()) return eval(*e.items[1]);
        return e.items[2] ? eval(*e.items[2]) : Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    }
    return Value();
  }

  Value eval_call(const Expr& e) {
    const Expr& callee = *e.items[0];
    if (callee.kind == ExprKind::attr) {
      const Value obj = eval(*callee.items[0]);
      Value out;
      if (call_method(obj, callee.name, eval_args(e, 1), out)) return out;
      const Value f = get_attribute(obj, callee.name);
      if (!f.is_function())
        throw EvalError(f.is_undefined() ? "'" + obj.type_name() + " object' has no method '" + callee.name + "'"
                                         : "'" + f.type_name() + "' object is not callable");
      return f.as_function()(eval_args(e, 1));
    }
    const Value f = eval(callee);
    if (!f.is_function()) {
      if (f.is_undefined()) throw EvalError(f.as_string().empty() ? "undefined value is not callable" : f.as_string());
      throw EvalError("'" + f.type_name() + "' object is not callable");
    }
    return f.as_function()(eval_args(e, 1));
  }

  Value eval_binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.items[0]);
      return l.truthy() ? eval(*e.items[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*e.items[0]);
      return l.truthy() ? l : eval(*e.items[1]);
    }
    const Value l = eval(*e.items[0]);
    const Value r = eval(*e.items[1]);
    if (op == "~") {
      std::string a = to_str(l), b = to_str(r);
      check_text_size(a.size() + b.size());
      return Value(std::move(a) + b);
    }
    if (op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=" || op == "in" || op == "not in")
      return Value(compare_op(op, l, r));
    return arithmetic(op, l, r);
  }

  static bool compare_op(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equals(l, r);
    if (op == "!=") return !equals(l, r);
    if (op == "<") return compare(l, r) < 0;
    if (op == "<=") return compare(l, r) <= 0;
    if (op == ">") return compare(l, r) > 0;
    if (op == ">=") return compare(l, r) >= 0;
    if (op == "in") return contains(r, l);
    return !contains(r, l);  // not in
  }

  const std::string& name_;
  std::vector<Scope> scopes_;
  std::string out_;
  int64_t iterations_ = 0;
  int macro_depth_ = 0;
};

}  // namespace

std::string render(const Body& root, const std::string& source_name, Dict context) {
  return Evaluator(source_name).run(root, std::move(context));
}

}  // namespace lmlab::tpl
