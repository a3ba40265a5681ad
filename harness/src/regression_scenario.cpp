// scenarios/regression.json -> RegressionScenario, checked whole; every error names the file and the field.
// Unknown keys are errors. The lengths must make every expected prompt-cache count exact (see the checks).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>
#include <set>

#include "lmlab/error.h"
#include "lmlab/regression.h"
#include "lmlab/server.h"
#include "model_options_fields.h"
#include "text_file.h"

namespace lmlab {

namespace {

using json = nlohmann::json;

struct Fields {
  std::string file;
  std::filesystem::path base_dir;

  [[noreturn]] void fail(const std::string& field, const std::string& message) const {
    throw Error(ErrorKind::invalid_input, harness_detail::field_where(file, field), message);
  }
  void only(const json& o, const std::string& field, const std::set<std::string>& known) const {
    if (!o.is_object()) fail(field, "must be an object");
    for (const auto& [key, v] : o.items())
      if (!known.count(key)) fail(field.empty() ? key : field + "." + key, fmt::format("unknown key (known: {})", fmt::join(known, ", ")));
  }
  int64_t positive(const json& o, const char* key, const std::string& field, int64_t fallback) const {
    if (!o.contains(key)) return fallback;
    const json& v = o[key];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0) fail(field, "must be a positive integer");
    return v.get<int64_t>();
  }
  std::string text(const json& o, const char* key, const std::string& field) const {
    if (!o.contains(key)) fail(field, "missing");
    if (!o[key].is_string() || o[key].get<std::string>().empty()) fail(field, "must be a non-empty string");
    return o[key].get<std::string>();
  }
  std::filesystem::path path(const json& o, const char* key, const std::string& field) const {
    const std::filesystem::path p = text(o, key, field);
    return (p.is_absolute() ? p : std::filesystem::absolute(base_dir / p)).lexically_normal();
  }

  RegressionModel model(const json& m, size_t i) const {
    const std::string at = fmt::format("models[{}]", i);
    only(m, at, {"name", "model", "synth"});
    RegressionModel out;
    out.name = text(m, "name", at + ".name");
    if (m.contains("model") == m.contains("synth")) fail(at, "give exactly one of \"model\" (a directory) and \"synth\"");
    if (m.contains("model")) out.dir = path(m, "model", at + ".model");
    if (m.contains("synth")) {
      const json& s = m["synth"];
      const std::string sf = at + ".synth";
      only(s, sf, {"arch", "layers", "sliding_window", "max_positions", "seed", "tokenizer_from"});
      RegressionSynth syn;
      syn.arch = text(s, "arch", sf + ".arch");
      syn.layers = positive(s, "layers", sf + ".layers", 0);
      syn.sliding_window = positive(s, "sliding_window", sf + ".sliding_window", 0);
      syn.max_positions = positive(s, "max_positions", sf + ".max_positions", 0);
      syn.seed = static_cast<uint64_t>(positive(s, "seed", sf + ".seed", 1));
      syn.tokenizer_from = path(s, "tokenizer_from", sf + ".tokenizer_from");
      out.synth = syn;
    }
    return out;
  }
};

}  // namespace

RegressionScenario parse_regression_scenario(std::string_view json_text, const std::filesystem::path& file) {
  const Fields f{file.string(), file.parent_path()};
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number past a double (1e999)
    throw Error(ErrorKind::invalid_input, file.string(), fmt::format("not valid JSON: {}", e.what()));
  }
  f.only(root, "", {"name", "description", "models", "long_tokens", "short_tokens", "shared_prefix_tokens",
                    "second_long_tokens", "max_tokens", "seed", "block_tokens", "server", "rss_budget_mb"});
  RegressionScenario s;
  s.file = file;
  s.name = f.text(root, "name", "name");
  if (root.contains("description")) s.description = f.text(root, "description", "description");
  if (!root.contains("models") || !root["models"].is_array() || root["models"].empty())
    f.fail("models", "must be a non-empty array of {\"name\", \"model\" | \"synth\"}");
  std::set<std::string> names;
  for (size_t i = 0; i < root["models"].size(); ++i) {
    s.models.push_back(f.model(root["models"][i], i));
    if (!names.insert(s.models.back().name).second) f.fail(fmt::format("models[{}].name", i), "is listed twice");
  }
  s.long_tokens = f.positive(root, "long_tokens", "long_tokens", s.long_tokens);
  s.short_tokens = f.positive(root, "short_tokens", "short_tokens", s.short_tokens);
  s.shared_prefix_tokens = f.positive(root, "shared_prefix_tokens", "shared_prefix_tokens", s.shared_prefix_tokens);
  s.second_long_tokens = f.positive(root, "second_long_tokens", "second_long_tokens", s.second_long_tokens);
  s.max_tokens = f.positive(root, "max_tokens", "max_tokens", s.max_tokens);
  s.seed = static_cast<uint64_t>(f.positive(root, "seed", "seed", static_cast<int64_t>(s.seed)));
  s.block_tokens = f.positive(root, "block_tokens", "block_tokens", s.block_tokens);
  s.rss_budget_mb = f.positive(root, "rss_budget_mb", "rss_budget_mb", s.rss_budget_mb);
  if (root.contains("server")) {
    const json& sv = root["server"];
    f.only(sv, "server", {"ctx_size", "prefill_size", "prompt_cache_mb", "kv_budget_mb", "threads", "parallel"});
    s.ctx_size = f.positive(sv, "ctx_size", "server.ctx_size", s.ctx_size);
    s.prefill_size = f.positive(sv, "prefill_size", "server.prefill_size", s.prefill_size);
    s.prompt_cache_mb = f.positive(sv, "prompt_cache_mb", "server.prompt_cache_mb", s.prompt_cache_mb);
    s.kv_budget_mb = f.positive(sv, "kv_budget_mb", "server.kv_budget_mb", s.kv_budget_mb);
    s.threads = f.positive(sv, "threads", "server.threads", 0);
    // Range-checked before the narrowing: 4294967300 must not read as 4 and pass the check below.
    const int64_t parallel = f.positive(sv, "parallel", "server.parallel", s.parallel);
    if (parallel > ServerOptions::kMaxParallel)
      f.fail("server.parallel", fmt::format("must be at most {} (lmlab serve --parallel's range)", ServerOptions::kMaxParallel));
    s.parallel = static_cast<int>(parallel);
  }
  // The sequence's meaning depends on these relations; a scenario that breaks one would test something else.
  if (s.long_tokens < 5000) f.fail("long_tokens", "must be at least 5000 (the suite's long prompt)");
  if (s.short_tokens > s.block_tokens)
    f.fail("short_tokens", fmt::format("must be at most block_tokens ({}) so the short prompt can never hit", s.block_tokens));
  if (s.shared_prefix_tokens >= s.long_tokens || s.shared_prefix_tokens >= s.second_long_tokens)
    f.fail("shared_prefix_tokens", "must be shorter than both long prompts");
  if (s.parallel < 4) f.fail("server.parallel", "must be at least 4: the concurrent phase runs four requests at once");
  // Subtracted, not added: both are positive, so a prompt length near INT64_MAX cannot overflow past the check.
  if (s.max_tokens > s.ctx_size - std::max(s.long_tokens, s.second_long_tokens))
    f.fail("server.ctx_size", "must hold the longer prompt plus max_tokens");
  return s;
}

RegressionScenario load_regression_scenario(const std::filesystem::path& file) {
  return parse_regression_scenario(harness_detail::read_text_file(file, "regression scenario", 1 << 20), file);
}

}  // namespace lmlab
