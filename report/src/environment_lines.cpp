#include "environment_lines.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "display_names.h"
#include "lmlab/options.h"
#include "units.h"

namespace lmlab::report_detail {

namespace {

using nlohmann::json;

json parse_object(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

std::string text_of(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

int64_t int_of(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : 0;
}

// The options every config of the run shares that say how the engine ran (device, threads, prefill chunk,
// context size); a field that differs between configs reads "per config" (the configurations section has it).
std::string shared_engine_options(const RunInfo& run) {
  const json cfg = parse_object(run.engine_config_json);
  if (!cfg.contains("configs") || !cfg["configs"].is_array() || cfg["configs"].empty()) return {};
  auto shared = [&](const char* key) -> std::optional<json> {
    std::optional<json> value;
    for (const json& c : cfg["configs"]) {
      if (!c.is_object() || !c.contains("options") || !c["options"].is_object() || !c["options"].contains(key)) return std::nullopt;
      const json& v = c["options"][key];
      if (value && *value != v) return json("per config");
      value = v;
    }
    return value;
  };
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : " · ") + part; };
  // `pattern` holds one {} for the value; `zero` is what 0 means for that option.
  auto number = [](const json& v, const std::string& zero, fmt::format_string<std::string> pattern) {
    if (v.is_string()) return fmt::format(pattern, v.get<std::string>());
    return v.is_number_integer() && v.get<int64_t>() > 0 ? fmt::format(pattern, std::to_string(v.get<int64_t>())) : zero;
  };
  if (auto d = shared("device")) add("device " + (d->is_string() ? d->get<std::string>() : d->dump()));
  if (auto t = shared("threads")) add(number(*t, "all threads", "{} threads"));
  if (auto p = shared("prefill_size"))
    add(number(*p, "prefill chunks of " + std::string(engine_option("prefill_size").zero_means), "prefill chunks of {} tokens"));
  if (auto c = shared("ctx_size")) add(number(*c, "ctx_size = model max", "ctx_size {}"));
  if (cfg.contains("decode_tokens") && cfg["decode_tokens"].is_number_integer())
    add(fmt::format("{} greedy decode tokens per sample", cfg["decode_tokens"].get<int64_t>()));
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> environment_lines(const RunInfo& run) {
  const json env = parse_object(run.environment_json);
  std::vector<std::pair<std::string, std::string>> out;
  if (env.empty()) {
    out.emplace_back("Environment", "not recorded (a run from before lmlab stored it)");
  } else {
    const std::string cpu = text_of(env, "cpu_model"), isa = text_of(env, "cpu_isa");  // no ISA before it was recorded
    out.emplace_back("CPU", fmt::format("{}, {} logical cores{}", cpu.empty() ? "unknown model" : cpu,
                                        int_of(env, "cores"), isa.empty() ? "" : ", " + isa + " kernels"));
    const int64_t ram = int_of(env, "ram_bytes");
    out.emplace_back("RAM", ram > 0 ? human_bytes(static_cast<double>(ram)) : "unknown");
    std::string gpus;
    if (env.contains("gpus") && env["gpus"].is_array())
      for (const json& g : env["gpus"])
        if (g.is_string()) gpus += (gpus.empty() ? "" : ", ") + g.get<std::string>();
    const std::string driver = text_of(env, "gpu_driver");
    out.emplace_back("GPU", gpus.empty() ? "none found (no /proc/driver/nvidia)"
                                         : gpus + (driver.empty() ? "" : ", driver " + driver));
    const std::string os = text_of(env, "os"), kernel = text_of(env, "kernel");
    out.emplace_back("OS", fmt::format("{}{}", os.empty() ? "unknown" : os, kernel.empty() ? "" : ", Linux " + kernel));
    // (The commit compiled into the binary is the run's git_commit, shown by each report's header.)
    out.emplace_back("Build", fmt::format("{} {}", text_of(env, "compiler"), text_of(env, "build_type")));
  }
  if (const std::string opts = shared_engine_options(run); !opts.empty()) out.emplace_back("Engine options", opts);
  return out;
}

std::string merged_runs_line(const std::vector<RunInfo>& runs) {
  std::string line;
  for (const RunInfo& r : runs)
    line += fmt::format("{}{} ({}, {})", line.empty() ? "" : ", ", r.id, r.git_commit.empty() ? "commit not recorded" : r.git_commit,
                        r.started_at);
  return line;
}

std::vector<std::string> superseded_lines(const std::vector<SupersededCell>& cells) {
  std::vector<std::string> lines;
  std::string which;  // "Vanilla @ 40000, TurboQuant @ 40000"
  int dropped = 0;
  for (size_t i = 0; i < cells.size(); ++i) {  // cells come grouped by (run, by_run)
    const SupersededCell& c = cells[i];
    which += fmt::format("{}{} @ {}", which.empty() ? "" : ", ", display_name(c.config), c.context);
    dropped += c.samples;
    if (i + 1 < cells.size() && cells[i + 1].run == c.run && cells[i + 1].by_run == c.by_run) continue;
    lines.push_back(fmt::format("run {}'s {} superseded by run {} ({} sample{} dropped)", c.run, which, c.by_run, dropped,
                                dropped == 1 ? "" : "s"));
    which.clear();
    dropped = 0;
  }
  return lines;
}

}  // namespace lmlab::report_detail
