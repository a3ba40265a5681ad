#include "prometheus_text.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "lmlab/error.h"

namespace lmlab::harness_detail {

namespace {

bool name_char(char c, bool first) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
  return alpha || (!first && c >= '0' && c <= '9');
}

// A sample value: a float, or one of Prometheus' spellings of the special values.
std::optional<double> parse_value(std::string_view v) {
  if (v == "+Inf" || v == "Inf") return INFINITY;
  if (v == "-Inf") return -INFINITY;
  if (v == "NaN") return NAN;
  if (v.empty() || v.size() > 64) return std::nullopt;
  const std::string s(v);
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE) return std::nullopt;
  return d;
}

}  // namespace

PrometheusText PrometheusText::parse(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes)
    throw Error(ErrorKind::invalid_input, "/metrics", fmt::format("{} bytes is more than the {} read", text.size(), max_bytes));
  PrometheusText out;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](const char* why) {
      return Error(ErrorKind::invalid_input, fmt::format("/metrics line {}", line_no),
                   fmt::format("{}: '{}'", why, line.substr(0, 120)));
    };
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    if (i == 0) throw bad("not a metric name");
    if (i < line.size() && line[i] == '{') {  // labels: quoted values may hold '}' and escaped quotes
      bool quoted = false;
      for (++i; i < line.size(); ++i) {
        if (quoted && line[i] == '\\') ++i;
        else if (line[i] == '"') quoted = !quoted;
        else if (!quoted && line[i] == '}') break;
      }
      if (i >= line.size()) throw bad("labels not closed");
      ++i;
    }
    const std::string name(line.substr(0, i));
    std::string_view rest = line.substr(i);
    if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) throw bad("no value after the name");
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    const std::string_view value = rest.substr(0, rest.find_first_of(" \t"));
    const auto v = parse_value(value);
    if (!v) throw bad("the value is not a number");
    out.samples_[name] = *v;
  }
  return out;
}

std::optional<double> PrometheusText::value(const std::string& name) const {
  const auto it = samples_.find(name);
  if (it == samples_.end()) return std::nullopt;
  return it->second;
}

}  // namespace lmlab::harness_detail
