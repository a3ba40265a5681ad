// The filters and tests of jinja2 3.1 that chat templates use (see builtins.h), with transformers'
// tojson (json.dumps with ensure_ascii=False, not jinja2's HTML-safe variant).
#include <algorithm>
#include <cmath>
#include <map>

#include "template/builtins.h"
#include "template/text.h"
#include "text/unicode.h"

namespace lmlab::tpl {

namespace {

// jinja2's title filter: words start after whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
  const std::u32string u = to_u32(s);
  std::string out;
  bool start = true;
  for (char32_t cp : u) {
    const bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    const std::string c = to_utf8(std::u32string(1, cp));
    out += sep ? c : start ? py_upper(c) : py_lower(c);
    start = sep;
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// jinja2's indent filter (lines split on \n; Python's splitlines also splits on rarer separators).
std::string indent(const std::string& s, const std::string& pad, bool first, bool blank) {
  // jinja2 splits s + "\n" with splitlines(): every \n-separated piece of s, the last one included.
  std::vector<std::string> lines;
  size_t pos = 0;
  while (true) {
    const size_t nl = s.find('\n', pos);
    lines.push_back(s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    check_text_size(out.size() + 1 + pad.size() + lines[k].size());
    if (k) out += '\n';
    if (k == 0 ? first : (blank || !lines[k].empty())) out += pad;
    out += lines[k];
  }
  return out;
}

Value round_value(const Value& v, int64_t precision, const std::string& method) {
  if (!v.is_number()) type_error("round: expected a number, not " + v.type_name());
  if (v.is_int() && method == "common" && precision >= 0) return Value(v.as_int());
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == "common")
    r = std::nearbyint(x);  // ties to even, like Python's round()
  else if (method == "ceil")
    r = std::ceil(x);
  else if (method == "floor")
    r = std::floor(x);
  else
    type_error("round: method must be 'common', 'ceil' or 'floor'");
  return Value(r / scale);
}

Value to_int(const Value& v, const Value& fallback, int64_t base) {
  if (v.is_int()) return Value(v.as_int());
  if (v.type() == Value::Type::floating) {
    const double d = v.as_double();
    if (std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
    return fallback;
  }
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), nullptr, true, true);
    std::string digits;
    for (char c : s)
      if (c != '_') digits += c;
    if (digits.empty()) return fallback;
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
    if (*end == '\0' && errno == 0) return Value(static_cast<int64_t>(i));
    const double d = std::strtod(digits.c_str(), &end);
    if (*end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
  }
  return fallback;
}

Value to_float(const Value& v, const Value& fallback) {
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value(d);
  }
  return fallback;
}

// Args without the first `skip` positionals (for select/selectattr/map's trailing test arguments).
Args drop(const Args& a, size_t skip) {
  Args out;
  for (size_t k = skip; k < a.positional.size(); ++k) out.positional.push_back(a.positional[k]);
  out.keyword = a.keyword;
  return out;
}

Value select(const Value& seq, const Args& a, bool by_attr, bool keep) {
  List out;
  const size_t test_at = by_attr ? 1 : 0;
  std::string attr = by_attr ? str_arg(a, 0, "attribute") : std::string();
  const Value* test = a.positional.size() > test_at ? &a.positional[test_at] : nullptr;
  if (test && !test->is_string()) type_error("select: the test name must be a string");
  const Args test_args = drop(a, test_at + 1);
  for (const Value& item : iterate(seq)) {
    const Value probe = by_attr ? get_attribute(item, attr) : item;
    const bool ok = test ? apply_test(test->as_string(), probe, test_args) : probe.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value sorted(const Value& seq, bool reverse, bool case_sensitive, const std::string* attribute) {
  List items = iterate(seq);
  auto key = [&](const Value& v) {
    Value k = attribute ? get_attribute(v, *attribute) : v;
    if (!case_sensitive && k.is_string()) return Value(py_lower(k.as_string()));
    return k;
  };
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& v : items) keyed.emplace_back(key(v), v);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? compare(y.first, x.first) < 0 : compare(x.first, y.first) < 0;
  });
  List out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

using FilterFn = Value (*)(const Value&, const Args&);

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"trim", [](const Value& v, const Args& a) {
         const Value* chars = a.get(0, "chars");
         const std::string* c = chars && chars->is_string() ? &chars->as_string() : nullptr;
         return Value(py_strip(to_str(v), c, true, true));
       }},
      {"tojson", [](const Value& v, const Args& a) {
         const int64_t indent = std::clamp<int64_t>(int_arg(a, 0, "indent", -1), -1, INT32_MAX);
         return Value(to_json(v, static_cast<int>(indent), bool_arg(a, 99, "sort_keys", false)));
       }},
      {"length", [](const Value& v, const Args&) { return Value(length(v)); }},
      {"count", [](const Value& v, const Args&) { return Value(length(v)); }},
      {"upper", [](const Value& v, const Args&) { return Value(py_upper(to_str(v))); }},
      {"lower", [](const Value& v, const Args&) { return Value(py_lower(to_str(v))); }},
      {"title", [](const Value& v, const Args&) { return Value(jinja_title(to_str(v))); }},
      {"capitalize", [](const Value& v, const Args&) { return Value(py_capitalize(to_str(v))); }},
      {"default", [](const Value& v, const Args& a) {
         const bool boolean = bool_arg(a, 1, "boolean", false);
         if (v.is_undefined() || (boolean && !v.truthy())) return arg_or(a, 0, "default_value", Value(""));
         return v;
       }},
      {"join", [](const Value& v, const Args& a) {
         const Value& sep = arg_or(a, 0, "d", Value(""));
         const Value* attr = a.get(1, "attribute");
         std::string out;
         bool first = true;
         const std::string sep_text = to_str(sep);
         for (const Value& item : iterate(v)) {
           const std::string text = to_str(attr ? get_attribute(item, to_str(*attr)) : item);
           check_text_size(out.size() + sep_text.size() + text.size());
           if (!first) out += sep_text;
           first = false;
           out += text;
         }
         return Value(std::move(out));
       }},
      {"first", [](const Value& v, const Args&) {
         List items = iterate(v);
         return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
       }},
      {"last", [](const Value& v, const Args&) {
         List items = iterate(v);
         return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
       }},
      {"list", [](const Value& v, const Args&) { return Value::list(iterate(v)); }},
      {"string", [](const Value& v, const Args&) { return Value(to_str(v)); }},
      {"int", [](const Value& v, const Args& a) {
         return to_int(v, arg_or(a, 0, "default", Value(int64_t{0})), int_arg(a, 1, "base", 10));
       }},
      {"float", [](const Value& v, const Args& a) { return to_float(v, arg_or(a, 0, "default", Value(0.0))); }},
      {"replace", [](const Value& v, const Args& a) {
         return Value(py_replace(to_str(v), to_str(arg_or(a, 0, "old", Value(""))), to_str(arg_or(a, 1, "new", Value(""))),
                                 int_arg(a, 2, "count", -1)));
       }},
      {"selectattr", [](const Value& v, const Args& a) { return select(v, a, true, true); }},
      {"rejectattr", [](const Value& v, const Args& a) { return select(v, a, true, false); }},
      {"select", [](const Value& v, const Args& a) { return select(v, a, false, true); }},
      {"reject", [](const Value& v, const Args& a) { return select(v, a, false, false); }},
      {"map", [](const Value& v, const Args& a) {
         List out;
         const Value* attr = a.get(99, "attribute");
         if (attr) {
           const Value* dflt = a.get(99, "default");
           for (const Value& item : iterate(v)) {
             Value r = get_attribute(item, to_str(*attr));
             out.push_back(r.is_undefined() && dflt ? *dflt : r);
           }
         } else {
           const std::string& name = str_arg(a, 0, "filter");
           if (!has_filter(name)) type_error("no filter named '" + name + "'");
           const Args rest = drop(a, 1);
           for (const Value& item : iterate(v)) out.push_back(apply_filter(name, item, rest));
         }
         return Value::list(std::move(out));
       }},
      {"items", [](const Value& v, const Args&) { return items_of(v); }},
      {"dictsort", [](const Value& v, const Args& a) {
         const bool case_sensitive = bool_arg(a, 0, "case_sensitive", false);
         const std::string by = to_str(arg_or(a, 1, "by", Value("key")));
         const bool reverse = bool_arg(a, 2, "reverse", false);
         const std::string attr = by == "value" ? "1" : "0";
         return sorted(items_of(v), reverse, case_sensitive, &attr);
       }},
      {"safe", [](const Value& v, const Args&) { return v; }},
      {"escape", [](const Value& v, const Args&) { return Value(html_escape(to_str(v))); }},
      {"e", [](const Value& v, const Args&) { return Value(html_escape(to_str(v))); }},
      {"round", [](const Value& v, const Args& a) {
         return round_value(v, int_arg(a, 0, "precision", 0), to_str(arg_or(a, 1, "method", Value("common"))));
       }},
      {"abs", [](const Value& v, const Args&) {
         if (v.is_int()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
         if (v.is_number()) return Value(std::fabs(v.as_double()));
         type_error("bad operand type for abs(): '" + v.type_name() + "'");
       }},
      {"indent", [](const Value& v, const Args& a) {
         const Value& w = arg_or(a, 0, "width", Value(int64_t{4}));
         const std::string pad = w.is_string() ? w.as_string() : std::string(static_cast<size_t>(std::clamp<int64_t>(w.as_int(), 0, 1000)), ' ');
         return Value(indent(to_str(v), pad, bool_arg(a, 1, "first", false), bool_arg(a, 2, "blank", false)));
       }},
      {"reverse", [](const Value& v, const Args&) {
         if (v.is_string()) {
           std::u32string u = to_u32(v.as_string());
           std::reverse(u.begin(), u.end());
           return Value(to_utf8(u));
         }
         List items = iterate(v);
         std::reverse(items.begin(), items.end());
         return Value::list(std::move(items));
       }},
      {"sort", [](const Value& v, const Args& a) {
         const Value* attr = a.get(2, "attribute");
         const std::string name = attr ? to_str(*attr) : std::string();
         return sorted(v, bool_arg(a, 0, "reverse", false), bool_arg(a, 1, "case_sensitive", false), attr ? &name : nullptr);
       }},
      {"unique", [](const Value& v, const Args&) {
         List out;
         for (const Value& item : iterate(v))
           if (!contains(Value::list(out), item)) out.push_back(item);
         return Value::list(std::move(out));
       }},
      {"sum", [](const Value& v, const Args& a) {
         const Value* attr = a.get(0, "attribute");
         Value acc = arg_or(a, 1, "start", Value(int64_t{0}));
         for (const Value& item : iterate(v)) acc = arithmetic("+", acc, attr ? get_attribute(item, to_str(*attr)) : item);
         return acc;
       }},
      {"min", [](const Value& v, const Args&) {
         List items = iterate(v);
         if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
         return *std::min_element(items.begin(), items.end(), [](const Value& x, const Value& y) { return compare(x, y) < 0; });
       }},
      {"max", [](const Value& v, const Args&) {
         List items = iterate(v);
         if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
         return *std::max_element(items.begin(), items.end(), [](const Value& x, const Value& y) { return compare(x, y) < 0; });
       }},
      // attr() reads Python attributes only, never dict keys: on these values it is always undefined.
      {"attr", [](const Value& v, const Args& a) {
         return Value::undefined(no_attribute(v, str_arg(a, 0, "name")));
       }},
      {"format", [](const Value& v, const Args& a) { return Value(percent_format(to_str(v), a.positional)); }},
      {"wordcount", [](const Value& v, const Args&) {  // runs of \w, as jinja2's regex counts words
         int64_t n = 0;
         bool in_word = false;
         for (char32_t cp : to_u32(to_str(v))) {
           const bool w = cp == '_' || tok::is_alphanumeric(cp);
           n += w && !in_word;
           in_word = w;
         }
         return Value(n);
       }},
  };
  return table;
}

using TestFn = bool (*)(const Value&, const Args&);

const Value& test_arg(const Args& a) {
  const Value* v = a.get(0, "other");
  if (!v) type_error("the test needs an argument");
  return *v;
}

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"defined", [](const Value& v, const Args&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const Args&) { return v.is_undefined(); }},
      {"none", [](const Value& v, const Args&) { return v.is_none(); }},
      {"boolean", [](const Value& v, const Args&) { return v.is_bool(); }},
      {"true", [](const Value& v, const Args&) { return v.is_bool() && v.as_bool(); }},
      {"false", [](const Value& v, const Args&) { return v.is_bool() && !v.as_bool(); }},
      {"integer", [](const Value& v, const Args&) { return v.type() == Value::Type::integer; }},
      {"float", [](const Value& v, const Args&) { return v.type() == Value::Type::floating; }},
      {"number", [](const Value& v, const Args&) { return v.is_number(); }},
      {"string", [](const Value& v, const Args&) { return v.is_string(); }},
      {"mapping", [](const Value& v, const Args&) { return v.is_dict(); }},
      {"iterable", [](const Value& v, const Args&) { return v.is_string() || v.is_list() || v.is_dict(); }},
      {"sequence", [](const Value& v, const Args&) { return v.is_string() || v.is_list() || v.is_dict(); }},
      {"callable", [](const Value& v, const Args&) { return v.is_function(); }},
      {"equalto", [](const Value& v, const Args& a) { return equals(v, test_arg(a)); }},
      {"eq", [](const Value& v, const Args& a) { return equals(v, test_arg(a)); }},
      {"==", [](const Value& v, const Args& a) { return equals(v, test_arg(a)); }},
      {"ne", [](const Value& v, const Args& a) { return !equals(v, test_arg(a)); }},
      {"!=", [](const Value& v, const Args& a) { return !equals(v, test_arg(a)); }},
      {"lt", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) < 0; }},
      {"<", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) < 0; }},
      {"le", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) <= 0; }},
      {"<=", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) <= 0; }},
      {"gt", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) > 0; }},
      {">", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) > 0; }},
      {"ge", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) >= 0; }},
      {">=", [](const Value& v, const Args& a) { return compare(v, test_arg(a)) >= 0; }},
      {"in", [](const Value& v, const Args& a) { return contains(test_arg(a), v); }},
      {"sameas", [](const Value& v, const Args& a) {
         const Value& o = test_arg(a);
         if (v.type() != o.type()) return false;
         if (v.is_none() || v.is_bool() || v.is_int()) return equals(v, o);
         if (v.is_list()) return &v.as_list() == &o.as_list();
         if (v.is_dict()) return &v.as_dict() == &o.as_dict();
         return false;
       }},
      {"odd", [](const Value& v, const Args&) { return v.is_int() && (v.as_int() % 2 != 0); }},
      {"even", [](const Value& v, const Args&) { return v.is_int() && v.as_int() % 2 == 0; }},
      {"divisibleby", [](const Value& v, const Args& a) {
         const Value& n = test_arg(a);
         if (!v.is_int() || !n.is_int() || n.as_int() == 0) type_error("divisibleby needs non-zero integers");
         return v.as_int() % n.as_int() == 0;
       }},
      // Python's islower()/isupper(): at least one cased character, and all of them in that case.
      {"lower", [](const Value& v, const Args&) {
         return v.is_string() && py_lower(v.as_string()) == v.as_string() && py_upper(v.as_string()) != v.as_string();
       }},
      {"upper", [](const Value& v, const Args&) {
         return v.is_string() && py_upper(v.as_string()) == v.as_string() && py_lower(v.as_string()) != v.as_string();
       }},
      {"filter", [](const Value& v, const Args&) { return v.is_string() && has_filter(v.as_string()); }},
      {"test", [](const Value& v, const Args&) { return v.is_string() && has_test(v.as_string()); }},
  };
  return table;
}

}  // namespace

bool has_filter(const std::string& name) { return filters().count(name) > 0; }

Value apply_filter(const std::string& name, const Value& v, const Args& args) {
  auto it = filters().find(name);
  if (it == filters().end()) throw EvalError("no filter named '" + name + "'");
  return it->second(v, args);
}

bool has_test(const std::string& name) { return tests().count(name) > 0; }

bool apply_test(const std::string& name, const Value& v, const Args& args) {
  auto it = tests().find(name);
  if (it == tests().end()) throw EvalError("no test named '" + name + "'");
  return it->second(v, args);
}

}  // namespace lmlab::tpl
