// Attribute and item access, operators, methods of str/dict/list and the global functions, after
// Python 3 and jinja2 3.1 (see builtins.h); the filters and tests live in filters.cpp.
#include "template/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "template/text.h"
#include "text/unicode.h"

namespace lmlab::tpl {

namespace {
constexpr int64_t kMaxSequence = 1'000'000;  // range(), repetition, list + list: ~100 MB of values at most

// Python's str.title(): a cased letter after an uncased character starts a word.
std::string py_title(const std::string& s) {
  const std::u32string u = to_u32(s);
  std::string out;
  bool prev_cased = false;
  for (char32_t cp : u) {
    const std::string c = to_utf8(std::u32string(1, cp));
    const bool cased = py_upper(c) != py_lower(c);
    out += cased ? (prev_cased ? py_lower(c) : py_upper(c)) : c;
    prev_cased = cased;
  }
  return out;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

void type_error(const std::string& msg) { throw EvalError(msg); }

std::string no_attribute(const Value& obj, const std::string& name) {
  std::string msg = "'";  // built step by step: GCC 12 misreports `"'" + std::string` (-Wrestrict)
  msg += obj.type_name();
  msg += " object' has no attribute '";
  msg += name;
  msg += '\'';
  return msg;
}

Value arg_or(const Args& a, size_t i, std::string_view name, const Value& fallback) {
  const Value* v = a.get(i, name);
  return v ? *v : fallback;
}

int64_t int_arg(const Args& a, size_t i, std::string_view name, int64_t fallback) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none()) return fallback;
  if (!v->is_int()) type_error("argument '" + std::string(name) + "' must be an integer, not " + v->type_name());
  return v->as_int();
}

bool bool_arg(const Args& a, size_t i, std::string_view name, bool fallback) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : fallback;
}

const std::string& str_arg(const Args& a, size_t i, std::string_view name) {
  const Value* v = a.get(i, name);
  if (!v) type_error("missing argument '" + std::string(name) + "'");
  if (!v->is_string()) type_error("argument '" + std::string(name) + "' must be str, not " + v->type_name());
  return v->as_string();
}

// The items a `for` loop or a filter sees: list items, dict keys, string characters; undefined is empty.
List iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::undefined: return {};
    case Value::Type::list: return v.as_list();
    case Value::Type::dict: {
      List keys;
      for (const auto& kv : v.as_dict().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Type::string: {
      List chars;
      const std::string& s = v.as_string();
      size_t i = 0;
      while (i < s.size()) {
        const size_t b = i;
        tok::utf8_next(s, i);
        chars.emplace_back(s.substr(b, i - b));
      }
      return chars;
    }
    default: type_error("'" + v.type_name() + "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.type()) {
    case Value::Type::undefined: return 0;
    case Value::Type::string: return static_cast<int64_t>(code_point_count(v.as_string()));
    case Value::Type::list: return static_cast<int64_t>(v.as_list().size());
    case Value::Type::dict: return static_cast<int64_t>(v.as_dict().items.size());
    default: type_error("object of type '" + v.type_name() + "' has no len()");
  }
}

Value items_of(const Value& v) {
  if (v.is_undefined()) return Value::list();
  if (!v.is_dict()) type_error("can only get items of a mapping, not " + v.type_name());
  List out;
  for (const auto& [k, val] : v.as_dict().items) out.push_back(Value::list({Value(k), val}, true));
  return Value::list(std::move(out));
}

std::string percent_format(const std::string& fmt, const List& args) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (i + 1 >= fmt.size()) type_error("incomplete format");
    const char c = fmt[++i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (next >= args.size()) type_error("not enough arguments for format string");
    const Value& v = args[next++];
    if (c == 's' || c == 'r') {
      const std::string text = c == 's' ? to_str(v) : to_repr(v);
      check_text_size(out.size() + text.size());
      out += text;
    } else if (c == 'd' || c == 'i') {
      if (!v.is_number()) type_error("%d format: a number is required, not " + v.type_name());
      out += std::to_string(v.is_int() ? v.as_int() : static_cast<int64_t>(v.as_double()));
    } else if (c == 'f') {
      if (!v.is_number()) type_error("%f format: a number is required, not " + v.type_name());
      char b[64];
      std::snprintf(b, sizeof b, "%f", v.as_double());
      out += b;
    } else {
      type_error(std::string("unsupported format character '") + c + "'");
    }
  }
  if (next < args.size()) type_error("not all arguments converted during string formatting");
  return out;
}

Value get_attribute(const Value& obj, const std::string& path) {
  Value cur = obj;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_dict()) {
      const Value* v = cur.as_dict().find(part);
      cur = v ? *v : Value::undefined("'dict object' has no attribute '" + part + "'");
    } else if (cur.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      cur = get_item(cur, Value(static_cast<int64_t>(std::stoll(part))));
    } else if (cur.is_undefined()) {
      throw EvalError(cur.as_string().empty() ? "undefined value has no attribute '" + part + "'" : cur.as_string());
    } else {
      cur = Value::undefined(no_attribute(cur, part));
    }
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_dict()) {
    if (!key.is_string()) return Value::undefined("'dict object' has no attribute " + to_repr(key));
    const Value* v = obj.as_dict().find(key.as_string());
    return v ? *v : Value::undefined("'dict object' has no attribute '" + key.as_string() + "'");
  }
  if (obj.is_list() || obj.is_string()) {
    if (!key.is_int()) {
      if (key.is_string()) return get_attribute(obj, key.as_string());
      type_error("indices must be integers, not " + key.type_name());
    }
    const int64_t n = length(obj);
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined(obj.type_name() + " object has no element " + std::to_string(key.as_int()));
    if (obj.is_list()) return obj.as_list()[static_cast<size_t>(i)];
    return Value(to_utf8(std::u32string(1, to_u32(obj.as_string())[static_cast<size_t>(i)])));
  }
  if (obj.is_undefined()) throw EvalError(obj.as_string().empty() ? "undefined value is not subscriptable" : obj.as_string());
  return Value::undefined("'" + obj.type_name() + " object' has no attribute " + to_repr(key));
}

Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step) {
  if (obj.is_undefined()) throw EvalError(obj.as_string().empty() ? "undefined value is not subscriptable" : obj.as_string());
  if (!obj.is_list() && !obj.is_string()) type_error("'" + obj.type_name() + "' object is not subscriptable");
  auto idx = [](const Value* v, const char* what) -> const Value* {
    if (!v || v->is_none()) return nullptr;
    if (!v->is_int()) type_error(std::string("slice ") + what + " must be an integer or None");
    return v;
  };
  start = idx(start, "start");
  stop = idx(stop, "stop");
  step = idx(step, "step");
  const int64_t n = length(obj);
  const int64_t st = step ? step->as_int() : 1;
  if (st == 0) type_error("slice step cannot be zero");
  auto clamp = [&](const Value* v, int64_t dflt) {
    if (!v) return dflt;
    int64_t i = v->as_int();
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  const int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> picks;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) picks.push_back(i);
  if (obj.is_list()) {
    List out;
    for (int64_t i : picks) out.push_back(obj.as_list()[static_cast<size_t>(i)]);
    return Value::list(std::move(out), obj.is_tuple());
  }
  const std::u32string u = to_u32(obj.as_string());
  std::u32string out;
  for (int64_t i : picks) out += u[static_cast<size_t>(i)];
  return Value(to_utf8(out));
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::string:
      if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::list:
      return std::any_of(container.as_list().begin(), container.as_list().end(),
                         [&](const Value& v) { return equals(v, item); });
    case Value::Type::dict: return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    case Value::Type::undefined: return false;
    default: type_error("argument of type '" + container.type_name() + "' is not iterable");
  }
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    throw EvalError(u.as_string().empty() ? "undefined value in arithmetic" : u.as_string());
  }
  const char o = op[0];
  if (a.is_number() && b.is_number()) {
    const bool ints = a.is_int() && b.is_int();
    const int64_t x = a.as_int(), y = b.as_int();
    const double p = a.as_double(), q = b.as_double();
    if (op == "+" || op == "-" || op == "*") {
      if (!ints) return Value(op == "+" ? p + q : op == "-" ? p - q : p * q);
      int64_t r = 0;
      const bool overflow = op == "+"   ? __builtin_add_overflow(x, y, &r)
                            : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                        : __builtin_mul_overflow(x, y, &r);
      if (overflow) type_error("integer overflow");
      return Value(r);
    }
    if (op == "/") {
      if (q == 0) type_error("division by zero");
      return Value(p / q);
    }
    if (op == "//" || op == "%") {
      if (q == 0) type_error(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
      if (ints) {
        if (x == INT64_MIN && y == -1) type_error("integer overflow");
        const int64_t d = floor_div(x, y);
        return op == "//" ? Value(d) : Value(x - d * y);
      }
      const double d = std::floor(p / q);
      return op == "//" ? Value(d) : Value(p - d * q);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t acc = 1;
        if (x == 0 || x == 1) return Value(y == 0 ? int64_t{1} : x);
        if (x == -1) return Value(y % 2 == 0 ? int64_t{1} : int64_t{-1});
        for (int64_t k = 0; k < y; ++k)  // |x| >= 2: overflows within 64 steps
          if (__builtin_mul_overflow(acc, x, &acc)) type_error("integer overflow");
        return Value(acc);
      }
      if (p == 0 && q < 0) type_error("0.0 cannot be raised to a negative power");
      return Value(std::pow(p, q));
    }
  }
  if (o == '+' && op.size() == 1) {
    if (a.is_string() && b.is_string()) {
      check_text_size(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      if (a.as_list().size() + b.as_list().size() > static_cast<size_t>(kMaxSequence)) type_error("list too large");
      List out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value::list(std::move(out), a.is_tuple());
    }
    if (a.is_string()) type_error("can only concatenate str (not \"" + b.type_name() + "\") to str");
  }
  if (op == "*" && (a.is_int() || b.is_int()) && (a.is_string() || b.is_string() || a.is_list() || b.is_list())) {
    const Value& seq = a.is_int() ? b : a;
    const int64_t n = std::max<int64_t>(0, (a.is_int() ? a : b).as_int());
    // Divide rather than multiply: n * length may overflow (e.g. 'ab' * 9223372036854775807).
    if (n > 0 && n > kMaxSequence / std::max<int64_t>(1, length(seq))) type_error("sequence repetition too large");
    if (seq.is_string()) check_text_size(static_cast<size_t>(n) * seq.as_string().size());
    if (seq.is_string()) {
      std::string out;
      for (int64_t k = 0; k < n; ++k) out += seq.as_string();
      return Value(std::move(out));
    }
    List out;
    for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
    return Value::list(std::move(out), seq.is_tuple());
  }
  if (op == "%" && a.is_string()) return Value(percent_format(a.as_string(), b.is_tuple() ? b.as_list() : List{b}));
  type_error("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

bool call_method(const Value& obj, const std::string& name, const Args& a, Value& out) {
  if (obj.is_string()) {
    const std::string& s = obj.as_string();
    const Value* chars = a.get(0, "chars");
    const std::string* c = chars && chars->is_string() ? &chars->as_string() : nullptr;
    if (name == "strip") return out = Value(py_strip(s, c, true, true)), true;
    if (name == "lstrip") return out = Value(py_strip(s, c, true, false)), true;
    if (name == "rstrip") return out = Value(py_strip(s, c, false, true)), true;
    if (name == "upper") return out = Value(py_upper(s)), true;
    if (name == "lower") return out = Value(py_lower(s)), true;
    if (name == "title") return out = Value(py_title(s)), true;
    if (name == "capitalize") return out = Value(py_capitalize(s)), true;
    if (name == "split") {
      const Value* sep = a.get(0, "sep");
      if (sep && sep->is_string() && sep->as_string().empty()) type_error("empty separator");
      List parts;
      for (auto& p : py_split(s, sep && sep->is_string() ? &sep->as_string() : nullptr, int_arg(a, 1, "maxsplit", -1)))
        parts.emplace_back(std::move(p));
      return out = Value::list(std::move(parts)), true;
    }
    if (name == "startswith" || name == "endswith") {
      const Value& p = arg_or(a, 0, "prefix", Value());
      List options = p.is_tuple() ? p.as_list() : List{p};
      bool hit = false;
      for (const Value& o : options) {
        if (!o.is_string()) type_error(name + " first arg must be str or a tuple of str, not " + o.type_name());
        const std::string& x = o.as_string();
        hit = hit || (name == "startswith" ? s.compare(0, x.size(), x) == 0
                                           : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0);
      }
      return out = Value(hit), true;
    }
    if (name == "replace")
      return out = Value(py_replace(s, str_arg(a, 0, "old"), str_arg(a, 1, "new"), int_arg(a, 2, "count", -1))), true;
    if (name == "find") {
      const size_t f = s.find(str_arg(a, 0, "sub"));
      return out = Value(f == std::string::npos ? int64_t{-1} : static_cast<int64_t>(code_point_count(s.substr(0, f)))), true;
    }
    if (name == "count") {
      const std::string& sub = str_arg(a, 0, "sub");
      if (sub.empty()) return out = Value(static_cast<int64_t>(code_point_count(s) + 1)), true;
      int64_t n = 0;
      for (size_t f = s.find(sub); f != std::string::npos; f = s.find(sub, f + sub.size())) ++n;
      return out = Value(n), true;
    }
    if (name == "join") {
      std::string r;
      bool first = true;
      for (const Value& item : iterate(arg_or(a, 0, "iterable", Value::list()))) {
        if (!item.is_string()) type_error("join: expected str instance, " + item.type_name() + " found");
        check_text_size(r.size() + s.size() + item.as_string().size());
        if (!first) r += s;
        first = false;
        r += item.as_string();
      }
      return out = Value(std::move(r)), true;
    }
    if (name == "isdigit" || name == "isspace" || name == "isalpha") {
      const std::u32string u = to_u32(s);
      bool ok = !u.empty();
      for (char32_t cp : u) {
        if (name == "isdigit") ok = ok && cp >= '0' && cp <= '9';
        if (name == "isspace") ok = ok && py_isspace(cp);
        if (name == "isalpha") ok = ok && tok::is_alphanumeric(cp) && !tok::is_numeric(cp);
      }
      return out = Value(ok), true;
    }
    return false;
  }
  if (obj.is_dict()) {
    const Dict& d = obj.as_dict();
    if (name == "get") {
      const Value& key = arg_or(a, 0, "key", Value());
      const Value* v = key.is_string() ? d.find(key.as_string()) : nullptr;
      return out = v ? *v : arg_or(a, 1, "default", Value::none()), true;
    }
    if (name == "items") return out = items_of(obj), true;
    if (name == "keys") return out = Value::list(iterate(obj)), true;
    if (name == "values") {
      List vals;
      for (const auto& kv : d.items) vals.push_back(kv.second);
      return out = Value::list(std::move(vals)), true;
    }
    return false;
  }
  if (obj.is_list()) {
    if (name == "index") {
      const Value& x = arg_or(a, 0, "value", Value());
      const List& l = obj.as_list();
      for (size_t k = 0; k < l.size(); ++k)
        if (equals(l[k], x)) return out = Value(static_cast<int64_t>(k)), true;
      type_error(to_repr(x) + " is not in list");
    }
    if (name == "count") {
      const Value& x = arg_or(a, 0, "value", Value());
      return out = Value(static_cast<int64_t>(std::count_if(obj.as_list().begin(), obj.as_list().end(),
                                                            [&](const Value& v) { return equals(v, x); }))),
             true;
    }
    return false;
  }
  return false;
}

Dict global_functions() {
  Dict g;
  g.set("range", Value::function("range", [](const Args& a) {
          if (a.positional.empty() || a.positional.size() > 3) type_error("range expected 1 to 3 arguments");
          for (const Value& v : a.positional)
            if (!v.is_int()) type_error("'" + v.type_name() + "' object cannot be interpreted as an integer");
          const bool one = a.positional.size() == 1;
          const int64_t start = one ? 0 : a.positional[0].as_int();
          const int64_t stop = one ? a.positional[0].as_int() : a.positional[1].as_int();
          const int64_t step = a.positional.size() == 3 ? a.positional[2].as_int() : 1;
          if (step == 0) type_error("range() arg 3 must not be zero");
          // Exact length in 128 bits, then index: `i += step` would overflow for steps near INT64_MAX.
          const __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
          const __int128 mag = step > 0 ? static_cast<__int128>(step) : -static_cast<__int128>(step);
          const __int128 count = span <= 0 ? 0 : (span + mag - 1) / mag;
          if (count > kMaxSequence) type_error("range too big");
          const int64_t n = static_cast<int64_t>(count);
          List out;
          out.reserve(static_cast<size_t>(n));
          for (int64_t k = 0; k < n; ++k)
            out.emplace_back(static_cast<int64_t>(start + static_cast<__int128>(k) * step));
          return Value::list(std::move(out));
        }));
  g.set("namespace", Value::function("namespace", [](const Args& a) {
          Dict d;
          d.is_namespace = true;
          for (const Value& p : a.positional) {
            if (!p.is_dict()) type_error("namespace() positional argument must be a mapping");
            for (const auto& [k, v] : p.as_dict().items) d.set(k, v);
          }
          for (const auto& [k, v] : a.keyword) d.set(k, v);
          return Value::dict(std::move(d));
        }));
  g.set("dict", Value::function("dict", [](const Args& a) {
          Dict d;
          for (const Value& p : a.positional)
            if (p.is_dict())
              for (const auto& [k, v] : p.as_dict().items) d.set(k, v);
          for (const auto& [k, v] : a.keyword) d.set(k, v);
          return Value::dict(std::move(d));
        }));
  g.set("raise_exception", Value::function("raise_exception", [](const Args& a) -> Value {
          throw RaisedError(a.positional.empty() ? std::string() : to_str(a.positional[0]));
        }));
  g.set("strftime_now", Value::function("strftime_now", [](const Args& a) {
          const std::string& fmt = str_arg(a, 0, "format");
          const std::time_t now = std::time(nullptr);
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[512];
          const size_t n = fmt.empty() ? 0 : std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
          return Value(std::string(buf, n));
        }));
  return g;
}

}  // namespace lmlab::tpl
