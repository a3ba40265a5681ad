// The committed gate baseline as JSON: one run's info, raw samples and evaluations, reviewable in a diff. Reading is
// bounded (kMaxGateBaselineBytes, counts of samples and tokens) and checks every field's type: the file is outside
// input (edited by hand, merged by git).
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "lmlab/gate.h"

namespace lmlab {
namespace {

using json = nlohmann::json;

constexpr int kFormatVersion = 1;
constexpr size_t kMaxSamples = 100'000, kMaxTokens = 1'000'000;

struct Reader {
  const std::string& file;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(ErrorKind::invalid_input, "results", fmt::format("gate baseline {}: field '{}': {}", file, field, what));
  }
  const json& at(const json& o, const char* key, const std::string& field) const {
    if (!o.is_object()) fail(field, "must be an object");
    const auto it = o.find(key);
    if (it == o.end()) fail(field + "." + key, "missing");
    return *it;
  }
  std::string str(const json& o, const char* key, const std::string& field) const {
    const json& v = at(o, key, field);
    if (!v.is_string()) fail(field + "." + key, "must be a string");
    return v.get<std::string>();
  }
  int64_t integer(const json& o, const char* key, const std::string& field) const {
    const json& v = at(o, key, field);
    if (!v.is_number_integer()) fail(field + "." + key, "must be an integer");
    return v.get<int64_t>();
  }
  double number(const json& o, const char* key, const std::string& field) const {
    const json& v = at(o, key, field);
    if (!v.is_number()) fail(field + "." + key, "must be a number");
    return v.get<double>();
  }
  std::optional<std::string> error(const json& o, const std::string& field) const {
    if (!o.contains("error") || o["error"].is_null()) return std::nullopt;
    return str(o, "error", field);
  }
  const json& array(const json& o, const char* key, const std::string& field, size_t max) const {
    const json& v = at(o, key, field);
    if (!v.is_array()) fail(field + "." + key, "must be an array");
    if (v.size() > max) fail(field + "." + key, fmt::format("has {} entries (at most {})", v.size(), max));
    return v;
  }
};

}  // namespace

std::string gate_run_to_json(const GateRun& run) {
  const RunInfo& i = run.info;
  json samples = json::array(), evals = json::array();
  for (const Sample& s : run.samples) {
    samples.push_back({{"config", s.config}, {"context_tokens", s.context_tokens}, {"repetition", s.repetition},
                       {"prompt_tokens", s.prompt_tokens}, {"prompt_ns", s.prompt_ns},
                       {"decode_tokens", s.decode_tokens}, {"decode_ns", s.decode_ns}, {"ttft_ns", s.ttft_ns},
                       {"peak_memory_bytes", s.peak_memory_bytes}, {"kv_cache_bytes", s.kv_cache_bytes},
                       {"ssd_bytes_read", s.ssd_bytes_read}, {"decode_ssd_bytes_read", s.decode_ssd_bytes_read},
                       {"output_tokens", s.output_tokens}, {"error", s.error ? json(*s.error) : json(nullptr)}});
    if (s.drive_read_bps > 0) samples.back()["drive_read_bps"] = s.drive_read_bps;
  }
  for (const Evaluation& e : run.evaluations)
    evals.push_back({{"config", e.config}, {"tokens", e.tokens}, {"nll_sum", e.nll_sum},
                     {"error", e.error ? json(*e.error) : json(nullptr)}});
  const json engine = json::parse(i.engine_config_json, nullptr, false);
  const json run_json = {{"id", i.id}, {"started_at", i.started_at}, {"host", i.host},
                         {"host_fingerprint", i.host_fingerprint}, {"scenario", i.scenario}, {"model", i.model},
                         {"model_bytes", i.model_bytes}, {"git_commit", i.git_commit}, {"notes", i.notes},
                         {"engine_config", engine.is_discarded() ? json::object() : engine}};
  // One sample or evaluation per line: a refreshed baseline's diff then shows which measurements moved.
  auto lines = [](const json& items) {
    std::string out = "[";
    for (size_t k = 0; k < items.size(); ++k) out += (k ? ",\n  " : "\n  ") + items[k].dump();
    return out + (items.empty() ? "]" : "\n ]");
  };
  return fmt::format("{{\n \"lmlab_gate_baseline\": {},\n \"run\": {},\n \"samples\": {},\n \"evaluations\": {}\n}}\n",
                     kFormatVersion, run_json.dump(), lines(samples), lines(evals));
}

GateRun gate_run_from_json(std::string_view text, const std::string& file) {
  const Reader r{file};
  if (text.size() > kMaxGateBaselineBytes)
    throw Error(ErrorKind::invalid_input, "results", fmt::format("gate baseline {}: {} bytes is over the {}-byte limit", file, text.size(), kMaxGateBaselineBytes));
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::invalid_input, "results", fmt::format("gate baseline {}: not valid JSON: {}", file, e.what()));
  }
  if (!root.is_object()) r.fail("(top)", "must be an object");
  if (r.integer(root, "lmlab_gate_baseline", "(top)") != kFormatVersion)
    r.fail("lmlab_gate_baseline", fmt::format("format version {} is not {}", root["lmlab_gate_baseline"].dump(), kFormatVersion));
  GateRun run;
  const json& ri = r.at(root, "run", "(top)");
  RunInfo& i = run.info;
  i.id = r.integer(ri, "id", "run");
  i.started_at = r.str(ri, "started_at", "run");
  i.host = r.str(ri, "host", "run");
  i.host_fingerprint = r.str(ri, "host_fingerprint", "run");
  i.scenario = r.str(ri, "scenario", "run");
  i.model = r.str(ri, "model", "run");
  i.model_bytes = r.integer(ri, "model_bytes", "run");
  i.git_commit = r.str(ri, "git_commit", "run");
  i.notes = r.str(ri, "notes", "run");
  const json& engine = r.at(ri, "engine_config", "run");
  if (!engine.is_object()) r.fail("run.engine_config", "must be an object");
  i.engine_config_json = engine.dump();

  const json& samples = r.array(root, "samples", "(top)", kMaxSamples);
  for (size_t k = 0; k < samples.size(); ++k) {
    const json& o = samples[k];
    const std::string f = fmt::format("samples[{}]", k);
    Sample s;
    s.config = r.str(o, "config", f);
    s.context_tokens = r.integer(o, "context_tokens", f);
    s.repetition = r.integer(o, "repetition", f);
    s.prompt_tokens = r.integer(o, "prompt_tokens", f);
    s.prompt_ns = r.integer(o, "prompt_ns", f);
    s.decode_tokens = r.integer(o, "decode_tokens", f);
    s.decode_ns = r.integer(o, "decode_ns", f);
    s.ttft_ns = r.integer(o, "ttft_ns", f);
    s.peak_memory_bytes = r.integer(o, "peak_memory_bytes", f);
    s.kv_cache_bytes = r.integer(o, "kv_cache_bytes", f);
    s.ssd_bytes_read = r.integer(o, "ssd_bytes_read", f);
    s.decode_ssd_bytes_read = r.integer(o, "decode_ssd_bytes_read", f);
    if (o.contains("drive_read_bps")) {  // absent: not probed (baselines written before the probe)
      s.drive_read_bps = r.number(o, "drive_read_bps", f);
      if (!std::isfinite(s.drive_read_bps) || s.drive_read_bps < 0)
        r.fail(f + ".drive_read_bps", "must be a non-negative number of bytes per second");
    }
    const json& tokens = r.array(o, "output_tokens", f, kMaxTokens);
    for (size_t t = 0; t < tokens.size(); ++t) {
      if (!tokens[t].is_number_integer() || tokens[t].get<int64_t>() < 0 || tokens[t].get<int64_t>() > INT32_MAX)
        r.fail(fmt::format("{}.output_tokens[{}]", f, t), "must be a token id (a non-negative 32-bit integer)");
      s.output_tokens.push_back(tokens[t].get<int32_t>());
    }
    s.error = r.error(o, f);
    run.samples.push_back(std::move(s));
  }
  const json& evals = r.array(root, "evaluations", "(top)", kMaxSamples);
  for (size_t k = 0; k < evals.size(); ++k) {
    const std::string f = fmt::format("evaluations[{}]", k);
    Evaluation e;
    e.config = r.str(evals[k], "config", f);
    e.tokens = r.integer(evals[k], "tokens", f);
    e.nll_sum = r.number(evals[k], "nll_sum", f);
    e.error = r.error(evals[k], f);
    run.evaluations.push_back(std::move(e));
  }
  return run;
}

}  // namespace lmlab
