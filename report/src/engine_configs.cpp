#include "engine_configs.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "lmlab/kv_storage.h"
#include "lmlab/options.h"
#include "report_rows.h"

namespace lmlab::report_detail {

namespace {

nlohmann::json parse_or_empty(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

// A recorded option's value, or the table's default when the run did not record it (older runs).
OptionValue recorded(const nlohmann::json& o, std::string_view key) {
  const OptionSpec& spec = engine_option(key);
  const auto it = o.find(std::string(key));
  if (it != o.end()) {
    if (spec.type == OptionType::integer && it->is_number_integer()) return it->get<int64_t>();
    if (spec.type == OptionType::boolean && it->is_boolean()) return it->get<bool>();
    if (spec.type == OptionType::choice && it->is_string()) return it->get<std::string>();
  }
  return get_option(ModelOptions{}, spec);
}

std::string show(const nlohmann::json& o, std::string_view key) {
  return describe_option_value(engine_option(key), recorded(o, key));
}

// "KV <what full-attention layers store>": the mode asked for, except where the device stores it otherwise
// (kv_mode_stored: a GPU keeps the plain modes as f16 rows); a partial offload's CPU layers keep the mode asked for.
std::string kv_storage_label(const nlohmann::json& o, const std::string& kv_mode) {
  const auto asked = std::find_if(std::begin(kAllKvModes), std::end(kAllKvModes),
                                  [&](KvMode m) { return kv_mode_name(m) == kv_mode; });
  if (asked == std::end(kAllKvModes) || show(o, "device") != "cuda") return "KV " + kv_mode;
  const KvMode stored = kv_mode_stored(*asked, Device::cuda);
  if (stored == *asked) return "KV " + kv_mode;
  return fmt::format("KV {} on the GPU ({} on any CPU layer)", kv_mode_name(stored), kv_mode);
}

// The headline options in words; every other option that differs from its default as "key: value".
std::string describe_options(const nlohmann::json& o) {
  const std::string kv_mode = show(o, "kv_mode");
  std::string s = kv_storage_label(o, kv_mode);
  const bool hot = std::get<int64_t>(recorded(o, "kv_hot_window")) > 0;
  if (kv_mode == "turbo")
    s += fmt::format(" (K{}{} V{}, {}{})", std::get<int64_t>(recorded(o, "kv_k_bits")),
                     std::get<bool>(recorded(o, "kv_k_qjl")) ? "+QJL" : "", std::get<int64_t>(recorded(o, "kv_v_bits")),
                     hot ? "hot window " : "", show(o, "kv_hot_window"));
  if (std::get<bool>(recorded(o, "stream_experts")))
    s += fmt::format(" · experts streamed from SSD, cache {} ({})", show(o, "expert_cache_mb"),
                     show(o, "expert_cache_policy"));
  else
    s += " · weights in memory";
  s += " · ctx_size " + show(o, "ctx_size") + " · threads: " + show(o, "threads");
  static constexpr std::string_view kShown[] = {"kv_mode",        "kv_hot_window",   "kv_k_bits",
                                                "kv_k_qjl",       "kv_v_bits",       "stream_experts",
                                                "expert_cache_mb", "expert_cache_policy", "ctx_size", "threads"};
  for (const OptionSpec& spec : engine_options()) {
    if (std::find(std::begin(kShown), std::end(kShown), spec.key) != std::end(kShown)) continue;
    const OptionValue v = recorded(o, spec.key);
    if (v != get_option(ModelOptions{}, spec)) s += fmt::format(" · {}: {}", spec.key, describe_option_value(spec, v));
  }
  return s;
}

// nullopt unless `r` is an object with a non-empty "name", a "baseline" and "decode_ratios" of positive numbers keyed
// by config, then by decimal context; a "description" string is optional.
std::optional<PublishedRatios> read_reference(const nlohmann::json& r) {
  if (!r.is_object() || !r.contains("name") || !r["name"].is_string() || r["name"].get<std::string>().empty() ||
      !r.contains("baseline") || !r["baseline"].is_string() || !r.contains("decode_ratios") ||
      !r["decode_ratios"].is_object())
    return std::nullopt;
  const auto description = r.find("description");
  PublishedRatios out{r["name"].get<std::string>(),
                      description != r.end() && description->is_string() ? description->get<std::string>() : "",
                      r["baseline"].get<std::string>(), {}};
  for (const auto& [config, per_context] : r["decode_ratios"].items()) {
    if (!per_context.is_object()) return std::nullopt;
    for (const auto& [key, ratio] : per_context.items()) {
      const bool decimal = !key.empty() && key.size() < 19 && key.find_first_not_of("0123456789") == std::string::npos;
      if (!decimal || !ratio.is_number() || !(ratio.get<double>() > 0)) return std::nullopt;
      out.ratios[config][std::stoll(key)] = ratio.get<double>();
    }
  }
  return out;
}

}  // namespace

std::vector<ConfigDescription> describe_configs(const RunInfo& run) {
  const nlohmann::json j = parse_or_empty(run.engine_config_json);
  std::vector<ConfigDescription> out;
  if (!j.is_object() || !j.contains("configs") || !j["configs"].is_array()) return out;
  for (const auto& c : j["configs"]) {
    if (!c.is_object() || !c.contains("name") || !c.contains("options")) continue;
    out.push_back({c["name"].get<std::string>(), describe_options(c["options"]), {}});
  }
  return out;
}

std::vector<ConfigDescription> describe_configs(const std::vector<RunInfo>& runs, const std::vector<Sample>& samples) {
  std::map<int64_t, std::map<std::string, std::string>> recorded_by_run;  // run id -> config -> summary
  bool any = false;
  for (const RunInfo& r : runs)
    for (ConfigDescription& c : describe_configs(r)) {
      recorded_by_run[r.id][c.name] = std::move(c.summary);
      any = true;
    }
  if (!any) return {};
  std::set<std::pair<int64_t, std::string>> measured;  // (run, config) pairs that have samples
  for (const Sample& s : samples) measured.emplace(s.run_id, s.config);

  std::vector<ConfigDescription> out;
  for (const std::string& config : configs_in_order(samples)) {
    for (const RunInfo& r : runs) {
      if (!measured.contains({r.id, config})) continue;
      const auto& recorded = recorded_by_run[r.id];
      const auto it = recorded.find(config);
      const std::string summary = it == recorded.end() ? "not recorded" : it->second;
      const auto same = std::find_if(out.begin(), out.end(),
                                     [&](const ConfigDescription& c) { return c.name == config && c.summary == summary; });
      if (same != out.end()) same->runs.push_back(r.id);
      else out.push_back({config, summary, {r.id}});
    }
  }
  return out;
}

std::string first_recorded_config(const std::vector<RunInfo>& runs) {
  for (const RunInfo& r : runs)
    if (const std::vector<ConfigDescription> configs = describe_configs(r); !configs.empty()) return configs.front().name;
  return {};
}

std::optional<PublishedRatios> published_ratios(const std::string& reference_json) {
  return read_reference(nlohmann::json::parse(reference_json, nullptr, /*allow_exceptions=*/false));
}

std::optional<PublishedRatios> recorded_reference(const RunInfo& run) {
  const nlohmann::json j = parse_or_empty(run.engine_config_json);
  return j.is_object() && j.contains("reference") ? read_reference(j["reference"]) : std::nullopt;
}

std::string describe_prompt(const RunInfo& run) {
  const nlohmann::json j = parse_or_empty(run.engine_config_json);
  if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_object()) return {};
  const auto& p = j["prompt"];
  if (p.value("source", "") == "text")
    return "text file " + std::filesystem::path(p.value("file", "?")).filename().string() + " (repeated to each context)";
  if (p.value("source", "") == "random") return fmt::format("random ids (seed {})", p.value("seed", uint64_t{0}));
  return {};
}

}  // namespace lmlab::report_detail
