// The built-in library of the template language: filters, tests, methods of str/dict/list, global
// functions (range, namespace, raise_exception, strftime_now, dict) and attribute lookup, following
// jinja2 and Python semantics. Errors are thrown as EvalError (the evaluator adds the location);
// raise_exception throws RaisedError so the template's own message is kept verbatim.
#pragma once

#include <string>
#include <string_view>

#include "template/value.h"

namespace lmlab::tpl {

struct RaisedError : EvalError {
  using EvalError::EvalError;
};

// jinja2's getattr: a dict's key (methods are resolved by call_method), an int index on lists,
// else undefined. Accepts dotted paths ("a.b.0") as selectattr/map/sort's `attribute` do.
Value get_attribute(const Value& obj, const std::string& path);
// obj[key] for dicts, lists (negative indexes) and strings (by code point); undefined when missing.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] for lists and strings, Python's slice semantics; null pointers = omitted.
Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step);

bool has_filter(const std::string& name);
Value apply_filter(const std::string& name, const Value& v, const Args& args);
bool has_test(const std::string& name);
bool apply_test(const std::string& name, const Value& v, const Args& args);
// Methods of str, dict and list ("a".strip(), d.items()); false when `name` is not one.
bool call_method(const Value& obj, const std::string& name, const Args& args, Value& out);
// The global functions every template sees.
Dict global_functions();

// Python's `in`, + (numbers, str, list), and the other arithmetic operators named by `op`.
bool contains(const Value& container, const Value& item);
Value arithmetic(const std::string& op, const Value& a, const Value& b);

// ---- helpers shared by builtins.cpp and filters.cpp ----
[[noreturn]] void type_error(const std::string& msg);  // throws EvalError
std::string no_attribute(const Value& obj, const std::string& name);  // "'str object' has no attribute 'x'"
// Argument `i` (positional) or `name` (keyword), else `fallback`; typed variants check the type.
Value arg_or(const Args& a, size_t i, std::string_view name, const Value& fallback);
int64_t int_arg(const Args& a, size_t i, std::string_view name, int64_t fallback);
bool bool_arg(const Args& a, size_t i, std::string_view name, bool fallback);
const std::string& str_arg(const Args& a, size_t i, std::string_view name);
// What a for loop sees: list items, dict keys, string characters; undefined is empty.
List iterate(const Value& v);
int64_t length(const Value& v);  // Python's len(); undefined is 0
Value items_of(const Value& v);  // a dict's (key, value) tuples
// printf-style `"..." % args` (%s %r %d %i %f %%).
std::string percent_format(const std::string& fmt, const List& args);

}  // namespace lmlab::tpl
