#include "engine_configs.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace lmlab::report_detail {

namespace {

nlohmann::json parse_or_empty(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

std::string describe_options(const nlohmann::json& o) {
  const std::string kv_mode = o.value("kv_mode", "?");
  std::string s = "KV " + kv_mode;
  const int64_t hot = o.value("kv_hot_window", int64_t{0});
  const std::string window = hot > 0 ? fmt::format("hot window {}", hot) : std::string("every token compressed");
  if (kv_mode == "turbo")
    s += fmt::format(" (K{}{} V{}, {})", o.value("kv_k_bits", 0), o.value("kv_k_qjl", false) ? "+QJL" : "",
                     o.value("kv_v_bits", 0), window);
  if (o.value("stream_experts", false)) {
    const int64_t mb = o.value("expert_cache_mb", int64_t{0});
    s += fmt::format(" · experts streamed from SSD, cache {} ({})",
                     mb > 0 ? fmt::format("{} MiB", mb) : std::string("25% of the experts"), o.value("expert_cache_policy", "?"));
  } else {
    s += " · weights in memory";
  }
  const int64_t ctx = o.value("ctx_size", int64_t{0});
  s += ctx > 0 ? fmt::format(" · ctx_size {}", ctx) : " · ctx_size = model max";
  const int threads = o.value("threads", 0);
  s += threads > 0 ? fmt::format(" · {} threads", threads) : " · all threads";
  return s;
}

}  // namespace

std::vector<ConfigDescription> describe_configs(const RunInfo& run) {
  const nlohmann::json j = parse_or_empty(run.engine_config_json);
  std::vector<ConfigDescription> out;
  if (!j.is_object() || !j.contains("configs") || !j["configs"].is_array()) return out;
  for (const auto& c : j["configs"]) {
    if (!c.is_object() || !c.contains("name") || !c.contains("options")) continue;
    out.push_back({c["name"].get<std::string>(), describe_options(c["options"])});
  }
  return out;
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
