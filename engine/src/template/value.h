// The values a chat template computes with, modelled on the Python objects jinja2 sees: undefined, None,
// bool, int, float, str, list (and tuple), dict (and namespace()), and callables (builtins, macros).
// Lists and dicts are shared by reference like Python objects; dicts keep insertion order.
// Invariants: strings hold UTF-8; a Dict's keys are unique strings.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmlab::tpl {

// A runtime error of template evaluation (type errors, undefined access); the evaluator adds the line.
struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bounds on what a template may build (a real chat prompt is far below them): the bytes of any one string,
// and the nesting depth that printing and comparing will walk. Beyond them an EvalError, never an unbounded
// allocation or a stack overflow.
inline constexpr size_t kMaxTextBytes = size_t{16} << 20;  // ~4M tokens: more than any context
inline constexpr int kMaxNesting = 512;
// Throws EvalError when a string of `bytes` would pass kMaxTextBytes; call before building it.
void check_text_size(size_t bytes);

class Value;
using List = std::vector<Value>;

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): the one object `{% set ns.attr = ... %}` may assign to

  const Value* find(std::string_view key) const;
  void set(std::string key, Value v);
};

// Positional and keyword arguments of a call.
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index`, else the keyword `name`, else nullptr.
  const Value* get(size_t index, std::string_view name) const;
};

using Function = std::function<Value(const Args&)>;

class Value {
 public:
  enum class Type { undefined, none, boolean, integer, floating, string, list, dict, function };

  Value() = default;  // undefined
  // Destroying the last reference to a deeply nested list/dict walks it with a heap stack, not recursion.
  ~Value();
  Value(const Value&) = default;
  Value(Value&&) noexcept = default;
  Value& operator=(const Value&) = default;
  Value& operator=(Value&&) noexcept = default;
  static Value undefined(std::string hint = {});
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double d);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(List items = {}, bool is_tuple = false);
  static Value dict(Dict d = {});
  static Value function(std::string name, Function f);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::undefined; }
  bool is_none() const { return type_ == Type::none; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_int() const { return type_ == Type::integer || type_ == Type::boolean; }
  bool is_number() const { return is_int() || type_ == Type::floating; }
  bool is_string() const { return type_ == Type::string; }
  bool is_list() const { return type_ == Type::list; }
  bool is_dict() const { return type_ == Type::dict; }
  bool is_function() const { return type_ == Type::function; }
  bool is_tuple() const { return type_ == Type::list && tuple_; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // bools are ints, as in Python
  double as_double() const { return type_ == Type::floating ? d_ : static_cast<double>(i_); }
  const std::string& as_string() const { return s_; }  // also the hint of an undefined
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }
  const Function& as_function() const { return *fn_; }
  const std::string& function_name() const { return s_; }

  bool truthy() const;
  std::string type_name() const;  // Python's type name: 'str', 'dict', ...

 private:
  Type type_ = Type::undefined;
  bool tuple_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

// Python's str(v) (what {{ v }} prints; undefined prints nothing) and repr(v).
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
// Python's repr of a float: the shortest round-trip digits, "1.0", "1e-05", "inf", "nan".
std::string float_repr(double d);
// Python's json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys); indent < 0 = none.
// Throws EvalError for values JSON cannot hold (undefined, functions).
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false);

// Python ==, and the ordering of <, sorted(): numbers with numbers, str with str, lists element-wise.
bool equals(const Value& a, const Value& b);
// Returns <0, 0, >0; throws EvalError when Python would raise TypeError.
int compare(const Value& a, const Value& b);

}  // namespace lmlab::tpl
