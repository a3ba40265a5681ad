// One row per ModelOptions field a scenario may set: its key, the member, and the values it accepts.
#include "model_options_fields.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <variant>
#include <vector>

#include "lmlab/error.h"

namespace lmlab::harness_detail {

namespace {

using Member = std::variant<int64_t ModelOptions::*, int ModelOptions::*, bool ModelOptions::*,
                            std::string ModelOptions::*, KvMode ModelOptions::*, Device ModelOptions::*>;

struct Field {
  const char* key;
  Member member;
  int64_t min = 0, max = std::numeric_limits<int64_t>::max();  // integers
  std::vector<std::string> choices = {};                         // strings and enums
};

const std::vector<std::string> kKvModes = [] {
  std::vector<std::string> names;
  for (KvMode m : kAllKvModes) names.emplace_back(kv_mode_name(m));
  return names;
}();
const std::vector<std::string> kDevices = {"cpu", "cuda"};

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      {"device", &ModelOptions::device, 0, 0, kDevices},
      {"gpu_layers", &ModelOptions::gpu_layers, -1},
      {"threads", &ModelOptions::threads, 0, 4096},
      {"ctx_size", &ModelOptions::ctx_size},
      {"prefill_size", &ModelOptions::prefill_size, 1},
      {"kv_block_tokens", &ModelOptions::kv_block_tokens, 1},
      {"kv_budget_mb", &ModelOptions::kv_budget_mb},
      {"prompt_cache_mb", &ModelOptions::prompt_cache_mb},
      {"kv_mode", &ModelOptions::kv_mode, 0, 0, kKvModes},
      {"kv_k_bits", &ModelOptions::kv_k_bits, 2, 5},
      {"kv_k_qjl", &ModelOptions::kv_k_qjl},
      {"kv_v_bits", &ModelOptions::kv_v_bits, 2, 5},
      {"kv_hot_window", &ModelOptions::kv_hot_window},
      {"stream_experts", &ModelOptions::stream_experts},
      {"expert_cache_mb", &ModelOptions::expert_cache_mb},
      {"expert_queue_depth", &ModelOptions::expert_queue_depth, 1, 4096},
      {"expert_predict_next", &ModelOptions::expert_predict_next},
      {"expert_cache_policy", &ModelOptions::expert_cache_policy, 0, 0, {"reuse", "lru"}},
  };
  return table;
}

std::string known_keys() {
  std::string s;
  for (const Field& f : fields()) s += (s.empty() ? "" : ", ") + std::string(f.key);
  return s;
}

std::string choice_of(const Field& f, const nlohmann::json& value, const std::string& where) {
  if (!value.is_string()) throw Error(ErrorKind::invalid_input, where, "must be a string");
  const auto s = value.get<std::string>();
  if (std::find(f.choices.begin(), f.choices.end(), s) == f.choices.end())
    throw Error(ErrorKind::invalid_input, where, fmt::format("'{}' is not one of {}", s, fmt::join(f.choices, ", ")));
  return s;
}

int64_t integer_of(const Field& f, const nlohmann::json& value, const std::string& where) {
  if (!value.is_number_integer()) throw Error(ErrorKind::invalid_input, where, "must be an integer");
  const int64_t v = value.get<int64_t>();
  if (v < f.min || v > f.max)
    throw Error(ErrorKind::invalid_input, where, fmt::format("{} is outside [{}, {}]", v, f.min, f.max));
  return v;
}

struct Assign {
  const Field& f;
  const nlohmann::json& value;
  const std::string& where;
  ModelOptions& o;
  void operator()(int64_t ModelOptions::*m) const { o.*m = integer_of(f, value, where); }
  void operator()(int ModelOptions::*m) const { o.*m = static_cast<int>(integer_of(f, value, where)); }
  void operator()(bool ModelOptions::*m) const {
    if (!value.is_boolean()) throw Error(ErrorKind::invalid_input, where, "must be true or false");
    o.*m = value.get<bool>();
  }
  void operator()(std::string ModelOptions::*m) const { o.*m = choice_of(f, value, where); }
  void operator()(KvMode ModelOptions::*m) const {
    const std::string s = choice_of(f, value, where);
    o.*m = kv_mode_from_name(s);
  }
  void operator()(Device ModelOptions::*m) const {
    o.*m = choice_of(f, value, where) == "cuda" ? Device::cuda : Device::cpu;
  }
};

struct ToJson {
  const ModelOptions& o;
  nlohmann::json operator()(int64_t ModelOptions::*m) const { return o.*m; }
  nlohmann::json operator()(int ModelOptions::*m) const { return o.*m; }
  nlohmann::json operator()(bool ModelOptions::*m) const { return o.*m; }
  nlohmann::json operator()(std::string ModelOptions::*m) const { return o.*m; }
  nlohmann::json operator()(KvMode ModelOptions::*m) const { return std::string(kv_mode_name(o.*m)); }
  nlohmann::json operator()(Device ModelOptions::*m) const { return kDevices.at(static_cast<size_t>(o.*m)); }
};

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
    const auto& table = fields();
    auto it = std::find_if(table.begin(), table.end(), [&](const Field& f) { return key == f.key; });
    if (it == table.end())
      throw Error(ErrorKind::invalid_input, where, "unknown engine option (known: " + known_keys() + ")");
    std::visit(Assign{*it, value, where, options}, it->member);
  }
}

nlohmann::json options_to_json(const ModelOptions& options) {
  nlohmann::json j = nlohmann::json::object();
  for (const Field& f : fields()) j[f.key] = std::visit(ToJson{options}, f.member);
  return j;
}

}  // namespace lmlab::harness_detail
