// Scenario "options" objects read through the engine's option table (lmlab/options.h): the keys, types, ranges
// and messages are the table's, so a scenario accepts exactly what the CLI accepts.
#include "model_options_fields.h"

#include <fmt/format.h>

#include <algorithm>

#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab::harness_detail {

namespace {

std::string known_keys() {
  std::string s;
  for (const OptionSpec& o : engine_options()) s += (s.empty() ? "" : ", ") + std::string(o.key);
  return s;
}

// The JSON value as the table's value type; a value of another JSON type is left for set_option to refuse.
OptionValue value_of(const nlohmann::json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) return v.get<std::string>();
  return v.dump();  // a string only a choice could take; set_option names the field either way
}

}  // namespace

std::string field_where(const std::string& file, const std::string& field) {
  return fmt::format("{}: field '{}'", file, field);
}

void apply_options(const nlohmann::json& object, const std::string& file, const std::string& field,
                   ModelOptions& options, const std::vector<std::string>& forbidden_keys, const std::string& reason) {
  if (!object.is_object())
    throw Error(ErrorKind::invalid_input, field_where(file, field), "must be an object of engine options");
  for (const auto& [key, value] : object.items()) {
    const std::string where = field_where(file, field + "." + key);
    if (std::find(forbidden_keys.begin(), forbidden_keys.end(), key) != forbidden_keys.end())
      throw Error(ErrorKind::invalid_input, where, reason);
    const OptionSpec* spec = find_engine_option(key);
    if (!spec) throw Error(ErrorKind::invalid_input, where, "unknown engine option (known: " + known_keys() + ")");
    if (spec->type == OptionType::choice && !value.is_string())
      throw Error(ErrorKind::invalid_input, where, "must be a string");
    set_option(options, *spec, value_of(value), where);
  }
}

nlohmann::json options_to_json(const ModelOptions& options) { return nlohmann::json::parse(options_to_json_text(options)); }

}  // namespace lmlab::harness_detail
