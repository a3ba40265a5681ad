// Scenario files: JSON -> Scenario, checked whole before anything runs. Every error names the file and the
// field. Unknown keys are errors (a misspelt "repetitons" must not silently run the default).
//
// Format (see scenarios/README.md):
// { "name": "default", "description": "...", "model": "path/relative/to/this/file",
//   "contexts": [512, 4096], "repetitions": 3, "decode_tokens": 32,
//   "prompt": {"source": "random", "seed": 42} | {"source": "text", "file": "prompts/x.py"},
//   "options": { engine options for every config },
//   "quality": {"golden": "path/to/golden.safetensors", "sequences": 1, "max_tokens": 0},   (optional)
//   "configs": [ {"name": "vanilla"}, {"name": "ssd", "options": {"expert_cache_mb": 5}},
//                {"name": "turbo-k3", "preset": "turbo", "options": {"kv_k_bits": 3}} ],
//   "interleave": false, "perplexity_tokens": 0 (or "quality", not both), "gate": { thresholds, see docs/gate.md },
//   "reference": {"name": "SwiftLM", "description": "...", "decode_ratios": {"turbo": {"512": 1.0}}} (optional) }
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "lmlab/error.h"
#include "lmlab/harness.h"
#include "model_options_fields.h"
#include "text_file.h"

namespace lmlab {

using harness_detail::field_where;
using json = nlohmann::json;

namespace {

// Characters of UTF-8 text (the bytes that do not continue a character), for limits a reader counts in characters.
size_t characters(const std::string& text) {
  return static_cast<size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Keys a preset owns: a config named after a preset, and the scenario-wide options, may not change them.
const std::vector<std::string> kPresetKeys = {"kv_mode", "stream_experts"};

struct Reader {
  std::string file;  // as written in errors
  std::filesystem::path base_dir;

  [[noreturn]] void fail(const std::string& field, const std::string& message) const {
    throw Error(ErrorKind::invalid_input, field_where(file, field), message);
  }

  void check_keys(const json& object, const std::string& field, const std::vector<std::string>& known) const {
    for (const auto& [key, value] : object.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end())
        fail(field.empty() ? key : field + "." + key, fmt::format("unknown key (known: {})", fmt::join(known, ", ")));
    }
  }

  std::string string_at(const json& object, const std::string& key, const std::string& field) const {
    const json& v = object.at(key);
    if (!v.is_string() || v.get<std::string>().empty()) fail(field, "must be a non-empty string");
    return v.get<std::string>();
  }

  int64_t positive_at(const json& v, const std::string& field) const {
    if (!v.is_number_integer() || v.get<int64_t>() <= 0) fail(field, "must be a positive integer");
    return v.get<int64_t>();
  }

  std::filesystem::path path_at(const json& object, const std::string& key, const std::string& field) const {
    const std::filesystem::path p = string_at(object, key, field);
    return (p.is_absolute() ? p : std::filesystem::absolute(base_dir / p)).lexically_normal();
  }

  std::vector<int64_t> contexts(const json& v) const {
    if (!v.is_array() || v.empty()) fail("contexts", "must be a non-empty array of context lengths in tokens");
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i) {
      const int64_t c = positive_at(v[i], fmt::format("contexts[{}]", i));
      if (std::find(out.begin(), out.end(), c) != out.end()) fail(fmt::format("contexts[{}]", i), fmt::format("{} is listed twice", c));
      out.push_back(c);
    }
    return out;
  }

  PromptSource prompt(const json& v) const {
    if (!v.is_object()) fail("prompt", R"(must be {"source": "random", "seed": N} or {"source": "text", "file": F})");
    if (!v.contains("source")) fail("prompt.source", "missing (\"random\" or \"text\")");
    const std::string source = string_at(v, "source", "prompt.source");
    PromptSource p;
    if (source == "random") {
      check_keys(v, "prompt", {"source", "seed"});
      p.kind = PromptSource::Kind::random_ids;
      if (v.contains("seed")) {
        if (!v["seed"].is_number_unsigned()) fail("prompt.seed", "must be a non-negative integer");
        p.seed = v["seed"].get<uint64_t>();
      }
    } else if (source == "text") {
      check_keys(v, "prompt", {"source", "file"});
      if (!v.contains("file")) fail("prompt.file", "missing: the text file whose tokens fill the context");
      p.kind = PromptSource::Kind::text_file;
      p.text_file = path_at(v, "file", "prompt.file");
      if (!std::filesystem::is_regular_file(p.text_file))
        fail("prompt.file", fmt::format("{} is not a readable file", p.text_file.string()));
    } else {
      fail("prompt.source", fmt::format("'{}' is not \"random\" or \"text\"", source));
    }
    return p;
  }

  QualitySpec quality(const json& v) const {
    if (!v.is_object()) fail("quality", R"(must be {"golden": FILE, "sequences": N, "max_tokens": N})");
    check_keys(v, "quality", {"golden", "sequences", "max_tokens"});
    if (!v.contains("golden")) fail("quality.golden", "missing: a golden .safetensors holding eval_ids_0, eval_ids_1, ...");
    QualitySpec q;
    q.golden = path_at(v, "golden", "quality.golden");
    if (!std::filesystem::is_regular_file(q.golden)) fail("quality.golden", fmt::format("{} is not a readable file", q.golden.string()));
    if (v.contains("sequences")) q.sequences = positive_at(v["sequences"], "quality.sequences");
    if (v.contains("max_tokens")) {
      q.max_tokens = positive_at(v["max_tokens"], "quality.max_tokens");
      if (q.max_tokens < 2) fail("quality.max_tokens", "must be at least 2 (one token predicted from another)");
    }
    return q;
  }

  BenchConfig config(const json& v, size_t index, const ModelOptions& common) const {
    const std::string field = fmt::format("configs[{}]", index);
    if (!v.is_object()) fail(field, R"(must be an object like {"name": "turbo"})");
    check_keys(v, field, {"name", "preset", "options"});
    if (!v.contains("name")) fail(field + ".name", "missing");
    BenchConfig c;
    c.name = string_at(v, "name", field + ".name");
    const std::optional<ConfigPreset> named = preset_from_name(c.name);
    if (v.contains("preset")) {
      const std::string p = string_at(v, "preset", field + ".preset");
      const auto preset = preset_from_name(p);
      if (!preset) fail(field + ".preset", fmt::format("'{}' is not one of vanilla, ssd, turbo, ssd+turbo", p));
      if (named && *named != *preset)
        fail(field + ".preset", fmt::format("config '{}' cannot use preset '{}': the name is a preset itself", c.name, p));
      c.preset = *preset;
    } else if (named) {
      c.preset = *named;
    } else {
      fail(field + ".preset", fmt::format("missing: config '{}' is not a preset name (vanilla, ssd, turbo, ssd+turbo), "
                                          "so it must say which preset it varies", c.name));
    }
    c.options = common;
    c.options.kv_mode = (c.preset == ConfigPreset::turbo || c.preset == ConfigPreset::ssd_turbo) ? KvMode::turbo : KvMode::f32;
    c.options.stream_experts = c.preset == ConfigPreset::ssd || c.preset == ConfigPreset::ssd_turbo;
    if (v.contains("options")) {
      const std::vector<std::string> forbidden = named ? kPresetKeys : std::vector<std::string>{};
      harness_detail::apply_options(v["options"], file, field + ".options", c.options, forbidden,
                                    fmt::format("config '{}' is a preset: its kv_mode and stream_experts are fixed "
                                                "(give it another name and a \"preset\" to vary them)", c.name));
    }
    return c;
  }

  double fraction_at(const json& v, const std::string& field, double max) const {
    if (!v.is_number() || !(v.get<double>() >= 0) || v.get<double>() > max)
      fail(field, fmt::format("must be a number in [0, {}]", max));
    return v.get<double>();
  }

  // [["config", "config"], ...] naming configs of this scenario; `what` says what the two are, for errors.
  std::vector<std::pair<std::string, std::string>> config_pairs(const json& v, const std::string& field,
                                                                const char* what,
                                                                const std::vector<BenchConfig>& configs) const {
    if (!v.is_array()) fail(field, fmt::format("must be an array of {}", what));
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string f = fmt::format("{}[{}]", field, i);
      if (!v[i].is_array() || v[i].size() != 2 || !v[i][0].is_string() || !v[i][1].is_string())
        fail(f, fmt::format("must be {}", what));
      auto pair = std::make_pair(v[i][0].get<std::string>(), v[i][1].get<std::string>());
      for (const std::string& name : {pair.first, pair.second})
        if (std::none_of(configs.begin(), configs.end(), [&](const BenchConfig& c) { return c.name == name; }))
          fail(f, fmt::format("'{}' is not a config of this scenario", name));
      out.push_back(std::move(pair));
    }
    return out;
  }

  // "gate": {"alpha", "noise_k", "thresholds": {metric: relative change}, "ratios": [[num, den]],
  //          "ssd_stall": [[streamed, reference]], "require_same_host"}
  GatePolicy gate(const json& v, const std::vector<BenchConfig>& configs) const {
    if (!v.is_object()) fail("gate", "must be an object (see docs/gate.md)");
    check_keys(v, "gate", {"alpha", "noise_k", "thresholds", "ratios", "ssd_stall", "require_same_host"});
    GatePolicy p;
    if (v.contains("alpha")) p.alpha = fraction_at(v["alpha"], "gate.alpha", 0.5);
    if (v.contains("noise_k")) p.noise_k = fraction_at(v["noise_k"], "gate.noise_k", 100);
    if (v.contains("require_same_host")) {
      if (!v["require_same_host"].is_boolean()) fail("gate.require_same_host", "must be true or false");
      p.require_same_host = v["require_same_host"].get<bool>();
    }
    if (v.contains("thresholds")) {
      const json& t = v["thresholds"];
      const std::vector<std::pair<std::string, double*>> metrics = {
          {"decode_tok_s", &p.decode_tok_s},           {"decode_ratio", &p.decode_ratio},
          {"ssd_bytes_per_decode_token", &p.ssd_bytes_per_decode_token}, {"ssd_stall", &p.ssd_stall},
          {"peak_memory_bytes", &p.peak_memory_bytes}, {"kv_bytes_per_token", &p.kv_bytes_per_token},
          {"perplexity", &p.perplexity},               {"greedy_tokens", &p.greedy_tokens}};
      std::vector<std::string> known;
      for (const auto& [key, member] : metrics) known.push_back(key);
      if (!t.is_object()) fail("gate.thresholds", "must be an object of relative changes");
      check_keys(t, "gate.thresholds", known);
      for (const auto& [key, member] : metrics)
        if (t.contains(key)) *member = fraction_at(t[key], "gate.thresholds." + key, 10);
    }
    if (v.contains("ratios"))
      for (auto& [num, den] : config_pairs(v["ratios"], "gate.ratios", R"(["numerator config", "denominator config"])", configs))
        p.ratios.push_back({std::move(num), std::move(den)});
    if (v.contains("ssd_stall"))
      for (auto& [streamed, ref] : config_pairs(v["ssd_stall"], "gate.ssd_stall",
                                                R"(["streaming config", "reference config"])", configs))
        p.ssd_stalls.push_back({std::move(streamed), std::move(ref)});
    return p;
  }

  // "reference": {"name", "description", "decode_ratios": {config: {"<context>": ratio}}}: a published sweep's decode
  // tok/s over its baseline's, set beside the report's decode ratios. Its baseline is this scenario's first config,
  // so that config has no entry; every other key is one of the scenario's configs, then one of its contexts.
  DecodeReference reference(const json& v, const std::vector<BenchConfig>& configs,
                            const std::vector<int64_t>& contexts) const {
    if (!v.is_object())
      fail("reference", R"(must be {"name": N, "description": D, "decode_ratios": {config: {"<context>": ratio}}})");
    check_keys(v, "reference", {"name", "description", "decode_ratios"});
    DecodeReference r;
    if (!v.contains("name")) fail("reference.name", "missing: whose published ratios these are (e.g. \"SwiftLM\")");
    r.name = string_at(v, "name", "reference.name");
    if (characters(r.name) > 32)
      fail("reference.name",
           fmt::format("is {} characters long: at most 32 (it heads a column per context)", characters(r.name)));
    if (v.contains("description")) {
      if (!v["description"].is_string()) fail("reference.description", "must be a string");
      r.description = v["description"].get<std::string>();
      if (characters(r.description) > 300)
        fail("reference.description", fmt::format("is {} characters long: at most 300", characters(r.description)));
    }
    r.baseline = configs.front().name;
    if (!v.contains("decode_ratios")) fail("reference.decode_ratios", R"(missing: {config: {"<context>": ratio}})");
    const json& ratios = v["decode_ratios"];
    if (!ratios.is_object()) fail("reference.decode_ratios", R"(must be an object {config: {"<context>": ratio}})");
    for (const auto& [config, per_context] : ratios.items()) {
      const std::string field = "reference.decode_ratios." + config;
      if (config == r.baseline)
        fail(field, fmt::format("'{}' is the baseline (the scenario's first config): the ratios are over it", config));
      if (std::none_of(configs.begin(), configs.end(), [&](const BenchConfig& c) { return c.name == config; }))
        fail(field, fmt::format("'{}' is not a config of this scenario", config));
      if (!per_context.is_object()) fail(field, R"(must be an object {"<context>": ratio})");
      r.decode_ratios[config];  // kept even when empty: the reference names the config
      for (const auto& [key, ratio] : per_context.items()) {
        const std::string f = field + "." + key;
        const auto context =
            std::find_if(contexts.begin(), contexts.end(), [&](int64_t c) { return std::to_string(c) == key; });
        if (context == contexts.end())
          fail(f, fmt::format("'{}' is not one of the scenario's contexts, written as a decimal integer ({})", key,
                              fmt::join(contexts, ", ")));
        if (!ratio.is_number() || !(ratio.get<double>() > 0) || ratio.get<double>() > 1000)
          fail(f, "must be a number in (0, 1000]: the config's decode tok/s over the baseline's");
        r.decode_ratios[config][*context] = ratio.get<double>();
      }
    }
    return r;
  }

  static std::optional<ConfigPreset> preset_from_name(const std::string& name) {
    for (ConfigPreset p : {ConfigPreset::vanilla, ConfigPreset::ssd, ConfigPreset::turbo, ConfigPreset::ssd_turbo})
      if (preset_name(p) == name) return p;
    return std::nullopt;
  }
};

}  // namespace

std::string_view preset_name(ConfigPreset preset) {
  switch (preset) {
    case ConfigPreset::vanilla: return "vanilla";
    case ConfigPreset::ssd: return "ssd";
    case ConfigPreset::turbo: return "turbo";
    case ConfigPreset::ssd_turbo: return "ssd+turbo";
  }
  return "?";
}

std::string model_options_json(const ModelOptions& options) { return harness_detail::options_to_json(options).dump(); }

namespace harness_detail {
json reference_to_json(const Scenario& scenario) {
  if (!scenario.reference) return nullptr;
  const DecodeReference& r = *scenario.reference;
  json ratios = json::object();
  for (const auto& [config, per_context] : r.decode_ratios) {
    ratios[config] = json::object();
    for (const auto& [context, ratio] : per_context) ratios[config][std::to_string(context)] = ratio;
  }
  return json{{"name", r.name}, {"description", r.description}, {"baseline", r.baseline}, {"decode_ratios", ratios}};
}
}  // namespace harness_detail

std::string reference_json(const Scenario& scenario) { return harness_detail::reference_to_json(scenario).dump(); }

Scenario parse_scenario(std::string_view json_text, const std::filesystem::path& file) {
  Reader r{file.string(), file.parent_path()};
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number past a double (1e999)
    throw Error(ErrorKind::invalid_input, file.string(), fmt::format("not valid JSON: {}", e.what()));
  }
  if (!root.is_object()) throw Error(ErrorKind::invalid_input, file.string(), "must be a JSON object");
  r.check_keys(root, "", {"name", "description", "model", "contexts", "repetitions", "decode_tokens", "prompt",
                          "options", "configs", "interleave", "perplexity_tokens", "gate", "quality", "reference"});
  Scenario s;
  s.file = file;
  for (const char* required : {"name", "contexts", "configs"})
    if (!root.contains(required)) r.fail(required, "missing");
  s.name = r.string_at(root, "name", "name");
  if (root.contains("description")) s.description = r.string_at(root, "description", "description");
  if (root.contains("model")) s.model = r.path_at(root, "model", "model");
  s.contexts = r.contexts(root["contexts"]);
  if (root.contains("repetitions")) s.repetitions = r.positive_at(root["repetitions"], "repetitions");
  if (root.contains("decode_tokens")) s.decode_tokens = r.positive_at(root["decode_tokens"], "decode_tokens");
  if (root.contains("prompt")) s.prompt = r.prompt(root["prompt"]);
  if (root.contains("quality")) s.quality = r.quality(root["quality"]);
  ModelOptions common;
  if (root.contains("options"))
    harness_detail::apply_options(root["options"], r.file, "options", common, kPresetKeys,
                                  "kv_mode and stream_experts are set by each config's preset");
  const json& configs = root["configs"];
  if (!configs.is_array() || configs.empty()) r.fail("configs", "must be a non-empty array of configs");
  std::set<std::string> names;
  for (size_t i = 0; i < configs.size(); ++i) {
    BenchConfig c = r.config(configs[i], i, common);
    if (!names.insert(c.name).second) r.fail(fmt::format("configs[{}].name", i), fmt::format("'{}' is listed twice", c.name));
    s.configs.push_back(std::move(c));
  }
  if (root.contains("interleave")) {
    if (!root["interleave"].is_boolean()) r.fail("interleave", "must be true or false");
    s.interleave = root["interleave"].get<bool>();
  }
  if (root.contains("perplexity_tokens")) s.perplexity_tokens = r.positive_at(root["perplexity_tokens"], "perplexity_tokens");
  if (s.perplexity_tokens > 0 && s.quality)
    r.fail("perplexity_tokens", "give either perplexity_tokens or quality: a run holds one set of evaluations");
  if (root.contains("gate")) s.gate = r.gate(root["gate"], s.configs);
  if (root.contains("reference")) s.reference = r.reference(root["reference"], s.configs, s.contexts);
  return s;
}

Scenario load_scenario(const std::filesystem::path& file) {
  return parse_scenario(harness_detail::read_text_file(file, "scenario file", 1 << 20), file);
}

}  // namespace lmlab
