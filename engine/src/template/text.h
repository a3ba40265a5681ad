// String helpers for templates with Python's str semantics: code-point indexing, isspace, strip/split,
// and Unicode case mapping (ICU, full mappings like Python's str.upper()).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lmlab::tpl {

std::u32string to_u32(std::string_view s);
std::string to_utf8(std::u32string_view s);
size_t code_point_count(std::string_view s);

bool py_isspace(char32_t cp);
// Python's str.strip/lstrip/rstrip: chars == nullptr strips whitespace, else any code point in *chars.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
// Python's str.split(sep, maxsplit): sep == nullptr splits on runs of whitespace.
std::vector<std::string> py_split(std::string_view s, const std::string* sep, long long maxsplit);

std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_capitalize(std::string_view s);  // first code point upper, the rest lower
std::string py_replace(std::string_view s, std::string_view from, std::string_view to, long long count);

}  // namespace lmlab::tpl
