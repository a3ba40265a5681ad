// Reading, writing, checking and showing options through the table: the one place values are validated.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "options/option_table.h"

namespace lmlab {

using options_detail::row_of;

namespace {

std::string where_or_flag(const OptionSpec& spec, std::string_view where) {
  return std::string(where.empty() ? spec.flag : where);
}

// The index of `s` among the row's choices (enums are stored as that index), or an error listing them.
size_t choice_index(const OptionSpec& spec, const std::string& s, const std::string& where) {
  auto it = std::find(spec.choices.begin(), spec.choices.end(), s);
  if (it == spec.choices.end())
    throw Error(ErrorKind::invalid_input, where, fmt::format("'{}' is not one of {}", s, fmt::join(spec.choices, ", ")));
  return static_cast<size_t>(it - spec.choices.begin());
}

struct Store {
  const OptionSpec& spec;
  const OptionValue& value;
  const std::string& where;
  ModelOptions& o;

  int64_t integer() const {
    const auto* v = std::get_if<int64_t>(&value);
    if (!v) throw Error(ErrorKind::invalid_input, where, "must be an integer");
    if (*v < spec.min || *v > spec.max)
      throw Error(ErrorKind::invalid_input, where, fmt::format("{} is outside [{}, {}]", *v, spec.min, spec.max));
    return *v;
  }
  size_t choice() const {
    const auto* v = std::get_if<std::string>(&value);
    if (!v) throw Error(ErrorKind::invalid_input, where, "must be a string");
    return choice_index(spec, *v, where);
  }
  void operator()(int64_t ModelOptions::*m) const { o.*m = integer(); }
  void operator()(int ModelOptions::*m) const { o.*m = static_cast<int>(integer()); }
  void operator()(bool ModelOptions::*m) const {
    const auto* v = std::get_if<bool>(&value);
    if (!v) throw Error(ErrorKind::invalid_input, where, "must be true or false");
    o.*m = *v;
  }
  void operator()(std::string ModelOptions::*m) const { o.*m = spec.choices[choice()]; }
  void operator()(KvMode ModelOptions::*m) const { o.*m = static_cast<KvMode>(choice()); }
  void operator()(Device ModelOptions::*m) const { o.*m = static_cast<Device>(choice()); }
};

struct Load {
  const OptionSpec& spec;
  const ModelOptions& o;
  OptionValue operator()(int64_t ModelOptions::*m) const { return o.*m; }
  OptionValue operator()(int ModelOptions::*m) const { return int64_t{o.*m}; }
  OptionValue operator()(bool ModelOptions::*m) const { return o.*m; }
  OptionValue operator()(std::string ModelOptions::*m) const { return o.*m; }
  OptionValue operator()(KvMode ModelOptions::*m) const { return std::string(spec.choices[static_cast<size_t>(o.*m)]); }
  OptionValue operator()(Device ModelOptions::*m) const { return std::string(spec.choices[static_cast<size_t>(o.*m)]); }
};

}  // namespace

const OptionSpec* find_engine_option(std::string_view key) {
  for (const OptionSpec& s : engine_options())
    if (s.key == key) return &s;
  return nullptr;
}

const OptionSpec& engine_option(std::string_view key) {
  if (const OptionSpec* s = find_engine_option(key)) return *s;
  throw Error(ErrorKind::internal, std::string(key), "not an engine option");
}

std::string_view option_flag(std::string_view key) { return engine_option(key).flag; }

OptionValue get_option(const ModelOptions& options, const OptionSpec& spec) {
  return std::visit(Load{spec, options}, row_of(spec).member);
}

void set_option(ModelOptions& options, const OptionSpec& spec, const OptionValue& value, std::string_view where) {
  const std::string w = where_or_flag(spec, where);
  std::visit(Store{spec, value, w, options}, row_of(spec).member);
}

OptionValue parse_option_text(const OptionSpec& spec, std::string_view text, std::string_view where) {
  const std::string w = where_or_flag(spec, where);
  switch (spec.type) {
    case OptionType::integer: {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        throw Error(ErrorKind::invalid_input, w, fmt::format("'{}' is not an integer", text));
      return v;
    }
    case OptionType::boolean:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      throw Error(ErrorKind::invalid_input, w, fmt::format("'{}' is not true or false", text));
    case OptionType::choice: return std::string(text);
  }
  throw Error(ErrorKind::internal, w, "option of no type");
}

void validate_options(const ModelOptions& options) {
  ModelOptions scratch;
  for (const OptionSpec& s : engine_options()) set_option(scratch, s, get_option(options, s));
}

std::string describe_option_value(const OptionSpec& spec, const OptionValue& value) {
  if (const auto* v = std::get_if<int64_t>(&value)) {
    if (*v == 0 && !spec.zero_means.empty()) return std::string(spec.zero_means);
    return spec.unit.empty() ? std::to_string(*v) : fmt::format("{} {}", *v, spec.unit);
  }
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  return std::get<std::string>(value);
}

std::string describe_option_default(const OptionSpec& spec) {
  return describe_option_value(spec, get_option(ModelOptions{}, spec));
}

int64_t effective_prefill_size(int64_t requested, Device device) {
  if (requested > 0) return requested;
  return device == Device::cuda ? kGpuPrefillSize : kCpuPrefillSize;
}

std::string options_to_json_text(const ModelOptions& options) {
  nlohmann::json j = nlohmann::json::object();
  for (const OptionSpec& s : engine_options())
    std::visit([&](const auto& v) { j[std::string(s.key)] = v; }, get_option(options, s));
  return j.dump();
}

}  // namespace lmlab
