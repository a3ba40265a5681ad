// Value semantics after Python: truthiness, str()/repr(), json.dumps, == and ordering.
#include "template/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <algorithm>

#include "text/unicode.h"

namespace lmlab::tpl {

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(std::string key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(std::move(key), std::move(v));
}

const Value* Args::get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [k, v] : keyword)
    if (k == name) return &v;
  return nullptr;
}

void check_text_size(size_t bytes) {
  if (bytes > kMaxTextBytes)
    throw EvalError("string too large (over " + std::to_string(kMaxTextBytes >> 20) + " MiB)");
}

Value::~Value() {
  // Detach every container this value owns alone, breadth first, so that each one dies with no owned
  // children left: destruction depth stays constant however deep the nesting.
  std::vector<std::shared_ptr<List>> lists;
  std::vector<std::shared_ptr<Dict>> dicts;
  auto take = [&](Value& v) {
    if (v.list_ && v.list_.use_count() == 1) lists.push_back(std::move(v.list_));
    if (v.dict_ && v.dict_.use_count() == 1) dicts.push_back(std::move(v.dict_));
  };
  take(*this);
  while (!lists.empty() || !dicts.empty()) {
    if (!lists.empty()) {
      std::shared_ptr<List> l = std::move(lists.back());
      lists.pop_back();
      for (Value& c : *l) take(c);
    } else {
      std::shared_ptr<Dict> d = std::move(dicts.back());
      dicts.pop_back();
      for (auto& kv : d->items) take(kv.second);
    }
  }
}

Value Value::undefined(std::string hint) {
  Value v;
  v.s_ = std::move(hint);
  return v;
}
Value Value::none() {
  Value v;
  v.type_ = Type::none;
  return v;
}
Value::Value(bool b) : type_(Type::boolean), i_(b ? 1 : 0) {}
Value::Value(int64_t i) : type_(Type::integer), i_(i) {}
Value::Value(double d) : type_(Type::floating), d_(d) {}
Value::Value(std::string s) : type_(Type::string), s_(std::move(s)) {}
Value Value::list(List items, bool is_tuple) {
  Value v;
  v.type_ = Type::list;
  v.tuple_ = is_tuple;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}
Value Value::dict(Dict d) {
  Value v;
  v.type_ = Type::dict;
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::function(std::string name, Function f) {
  Value v;
  v.type_ = Type::function;
  v.s_ = std::move(name);
  v.fn_ = std::make_shared<Function>(std::move(f));
  return v;
}

bool Value::truthy() const {
  switch (type_) {
    case Type::undefined:
    case Type::none: return false;
    case Type::boolean:
    case Type::integer: return i_ != 0;
    case Type::floating: return d_ != 0;
    case Type::string: return !s_.empty();
    case Type::list: return !list_->empty();
    case Type::dict: return !dict_->items.empty();
    case Type::function: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::undefined: return "Undefined";
    case Type::none: return "NoneType";
    case Type::boolean: return "bool";
    case Type::integer: return "int";
    case Type::floating: return "float";
    case Type::string: return "str";
    case Type::list: return tuple_ ? "tuple" : "list";
    case Type::dict: return dict_->is_namespace ? "Namespace" : "dict";
    case Type::function: return "function";
  }
  return "object";
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits in scientific form, then Python's layout: fixed notation when the
  // decimal exponent is in [-4, 16), else d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = !sci.empty() && sci[0] == '-';
  if (neg) sci.erase(0, 1);
  const size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_pos + 1));
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exp - 1), '0');
      out += digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits;
      out.append(static_cast<size_t>(exp) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp) + 1);
      out += '.';
      out += digits.substr(static_cast<size_t>(exp) + 1);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
  return out;
}

namespace {

// Python's repr of a str: single quotes unless the text has ' and no ".
std::string str_repr(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  size_t i = 0;
  while (i < s.size()) {
    const char32_t cp = tok::utf8_next(s, i);
    if (cp == static_cast<char32_t>(q) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(cp));
      out += b;
    } else {
      tok::utf8_append(out, cp);
    }
  }
  out += q;
  return out;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
          out += b;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void json_dump(std::string& out, const Value& v, int indent, bool sort_keys, int depth) {
  if (depth > kMaxNesting) throw EvalError("tojson: nesting too deep");
  check_text_size(out.size());
  auto newline = [&](int d) {
    if (indent < 0) return;
    check_text_size(out.size() + 1 + static_cast<size_t>(indent) * static_cast<size_t>(d));
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.type()) {
    case Value::Type::none: out += "null"; return;
    case Value::Type::boolean: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::integer: out += std::to_string(v.as_int()); return;
    case Value::Type::floating: {
      const double d = v.as_double();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : float_repr(d);
      return;
    }
    case Value::Type::string: json_string(out, v.as_string()); return;
    case Value::Type::list: {
      const List& l = v.as_list();
      if (l.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < l.size(); ++k) {
        if (k) out += item_sep;
        newline(depth + 1);
        json_dump(out, l[k], indent, sort_keys, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Type::dict: {
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.as_dict().items) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += item_sep;
        newline(depth + 1);
        json_string(out, items[k]->first);
        out += ": ";
        json_dump(out, items[k]->second, indent, sort_keys, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    case Value::Type::undefined: throw EvalError("Object of type Undefined is not JSON serializable");
    case Value::Type::function: throw EvalError("Object of type function is not JSON serializable");
  }
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.type()) {
    case Value::Type::undefined: return "";
    case Value::Type::none: return "None";
    case Value::Type::boolean: return v.as_bool() ? "True" : "False";
    case Value::Type::integer: return std::to_string(v.as_int());
    case Value::Type::floating: return float_repr(v.as_double());
    case Value::Type::string: return v.as_string();
    default: return to_repr(v);
  }
}

namespace {

void check_depth(int depth, const char* what) {
  if (depth > kMaxNesting) throw EvalError(std::string(what) + ": nesting too deep (or a value that contains itself)");
}

std::string repr_at(const Value& v, int depth) {
  check_depth(depth, "repr");
  switch (v.type()) {
    case Value::Type::string: return str_repr(v.as_string());
    case Value::Type::list: {
      const List& l = v.as_list();
      std::string out = v.is_tuple() ? "(" : "[";
      for (size_t k = 0; k < l.size(); ++k) {
        const std::string item = repr_at(l[k], depth + 1);
        check_text_size(out.size() + item.size() + 2);
        out += (k ? ", " : "") + item;
      }
      if (v.is_tuple() && l.size() == 1) out += ",";
      return out + (v.is_tuple() ? ")" : "]");
    }
    case Value::Type::dict: {
      const Dict& d = v.as_dict();
      std::string out = d.is_namespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, val] : d.items) {
        const std::string item = str_repr(k) + ": " + repr_at(val, depth + 1);
        check_text_size(out.size() + item.size() + 2);
        out += (first ? "" : ", ") + item;
        first = false;
      }
      return out + (d.is_namespace ? "}>" : "}");
    }
    case Value::Type::function: return "<function " + v.function_name() + ">";
    default: return to_str(v);
  }
}

bool equals_at(const Value& a, const Value& b, int depth) {
  check_depth(depth, "==");
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::undefined:
    case Value::Type::none: return true;
    case Value::Type::string: return a.as_string() == b.as_string();
    case Value::Type::list: {
      const List &x = a.as_list(), &y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t k = 0; k < x.size(); ++k)
        if (!equals_at(x[k], y[k], depth + 1)) return false;
      return true;
    }
    case Value::Type::dict: {
      const Dict &x = a.as_dict(), &y = b.as_dict();
      if (&x == &y) return true;
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* w = y.find(k);
        if (!w || !equals_at(v, *w, depth + 1)) return false;
      }
      return true;
    }
    case Value::Type::function: return &a.as_function() == &b.as_function();
    default: return false;
  }
}

int compare_at(const Value& a, const Value& b, int depth) {
  check_depth(depth, "<");
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order = code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List &x = a.as_list(), &y = b.as_list();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k)
      if (!equals_at(x[k], y[k], depth + 1)) return compare_at(x[k], y[k], depth + 1);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  throw EvalError("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

}  // namespace

std::string to_repr(const Value& v) { return repr_at(v, 0); }

std::string to_json(const Value& v, int indent, bool sort_keys) {
  std::string out;
  json_dump(out, v, indent, sort_keys, 0);
  check_text_size(out.size());
  return out;
}

bool equals(const Value& a, const Value& b) { return equals_at(a, b, 0); }

int compare(const Value& a, const Value& b) { return compare_at(a, b, 0); }

}  // namespace lmlab::tpl
