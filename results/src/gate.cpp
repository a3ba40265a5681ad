// The regression gate: whether two runs can be compared at all, then one row per metric and group (see gate.h for
// the rules and docs/gate.md for why).
#include "lmlab/error.h"
#include "lmlab/gate.h"
#include "lmlab/options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace lmlab {
namespace {

using json = nlohmann::json;
using GroupKey = std::pair<std::string, int64_t>;  // (config, context)
using Groups = std::map<GroupKey, std::vector<const Sample*>>;

Groups groups_of(const GateRun& run) {
  Groups g;
  for (const Sample& s : run.samples) g[{s.config, s.context_tokens}].push_back(&s);
  for (auto& [key, members] : g)  // pair ratios by repetition
    std::sort(members.begin(), members.end(), [](const Sample* a, const Sample* b) { return a->repetition < b->repetition; });
  return g;
}

json engine_config(const RunInfo& run) {
  const json j = json::parse(run.engine_config_json, nullptr, false);
  return j.is_object() ? j : json::object();
}

// The run's measurement settings that must match for any comparison: checkout paths and the test-only delay removed
// (the delay is what the gate's own tests vary). Picked by key, so what else a run records, such as the published
// "reference" its report shows, never stops a comparison.
json measurement_settings(const RunInfo& run) {
  json j = engine_config(run);
  json out = json::object();
  for (const char* key : {"contexts", "decode_tokens", "sampling"})
    if (j.contains(key)) out[key] = j[key];
  if (j.contains("prompt") && j["prompt"].is_object()) {
    json p = j["prompt"];
    if (p.contains("file") && p["file"].is_string())
      p["file"] = std::filesystem::path(p["file"].get<std::string>()).filename().string();
    out["prompt"] = p;
  }
  if (j.contains("configs") && j["configs"].is_array()) {
    json configs = j["configs"];
    // Options at the engine's current defaults are dropped from both sides: an option added after the baseline
    // was recorded (gpu_layers) does not change what a config measures while it sits at its default, and a
    // changed default still shows (the side recorded at the old default keeps its value).
    static const json defaults = json::parse(options_to_json_text(ModelOptions{}));
    for (json& c : configs) {
      if (!c.is_object() || !c.contains("options") || !c["options"].is_object()) continue;
      json& o = c["options"];
      o.erase("debug_token_delay_us");
      // A default that depends on the device compares as what it means there: a baseline recorded as 512 when that
      // was the default equals a CPU candidate's 0, not a GPU one's (effective_prefill_size).
      if (o.contains("prefill_size") && o["prefill_size"].is_number_integer()) {
        const Device device = o.value("device", json("cpu")) == json("cuda") ? Device::cuda : Device::cpu;
        if (effective_prefill_size(o["prefill_size"].get<int64_t>(), device) == effective_prefill_size(0, device))
          o.erase("prefill_size");
      }
      for (const auto& [key, value] : defaults.items())
        if (o.contains(key) && o[key] == value) o.erase(key);
    }
    out["configs"] = configs;
  }
  return out;
}

// Reasons a run cannot be compared: failed samples or evaluations, or a grid with missing samples.
void check_complete(const GateRun& run, const std::string& side, std::vector<std::string>& reasons) {
  const std::string who = fmt::format("{} run {}", side, run.info.id);
  if (run.samples.empty()) {
    reasons.push_back(who + " has no samples");
    return;
  }
  int failed = 0;
  std::string first;
  for (const Sample& s : run.samples)
    if (s.error && failed++ == 0) first = fmt::format("{} at context {}: {}", s.config, s.context_tokens, *s.error);
  if (failed > 0) reasons.push_back(fmt::format("{} is incomplete: {} samples failed (first: {})", who, failed, first));
  for (const Evaluation& e : run.evaluations)
    if (e.error) reasons.push_back(fmt::format("{} is incomplete: the perplexity of {} failed: {}", who, e.config, *e.error));

  // The grid the run was asked for (its engine configuration), else the one its samples span.
  const json cfg = engine_config(run.info);
  std::set<std::string> configs;
  std::set<int64_t> contexts;
  int64_t reps = 0;
  for (const Sample& s : run.samples) configs.insert(s.config), contexts.insert(s.context_tokens);
  if (cfg.contains("configs") && cfg["configs"].is_array())
    for (const json& c : cfg["configs"])
      if (c.is_object() && c.contains("name") && c["name"].is_string()) configs.insert(c["name"].get<std::string>());
  if (cfg.contains("contexts") && cfg["contexts"].is_array())
    for (const json& c : cfg["contexts"])
      if (c.is_number_integer()) contexts.insert(c.get<int64_t>());
  if (cfg.contains("repetitions") && cfg["repetitions"].is_number_integer()) reps = cfg["repetitions"].get<int64_t>();
  const Groups groups = groups_of(run);
  if (reps == 0)
    for (const auto& [key, members] : groups) reps = std::max<int64_t>(reps, static_cast<int64_t>(members.size()));
  for (const std::string& c : configs) {
    for (int64_t ctx : contexts) {
      const auto it = groups.find({c, ctx});
      const int64_t have = it == groups.end() ? 0 : static_cast<int64_t>(it->second.size());
      if (have < reps)
        reasons.push_back(fmt::format("{} is incomplete: {} at context {} has {} of {} samples", who, c, ctx, have, reps));
    }
  }
}

double relative_iqr(const std::vector<double>& v) {
  const double median = quantile(v, 0.5);
  return median > 0 ? (quantile(v, 0.75) - quantile(v, 0.25)) / median : 0.0;
}

// A row not compared, and why.
GateRow skipped_row(std::string metric, std::string config, int64_t context, std::string note) {
  GateRow r;
  r.metric = std::move(metric);
  r.config = std::move(config);
  r.context = context;
  r.verdict = GateVerdict::skipped;
  r.note = std::move(note);
  return r;
}

// A measured metric: regression iff worse by more than the (noise-floored) threshold and p < alpha.
GateRow measured(std::string metric, std::string config, int64_t context, const std::vector<double>& base,
                 const std::vector<double>& cand, bool higher_is_better, double threshold, const GatePolicy& policy) {
  GateRow r;
  r.metric = std::move(metric);
  r.config = std::move(config);
  r.context = context;
  r.n_baseline = static_cast<int>(base.size());
  r.n_candidate = static_cast<int>(cand.size());
  r.baseline = quantile(base, 0.5);
  r.candidate = quantile(cand, 0.5);
  r.threshold = std::max(threshold, policy.noise_k * relative_iqr(base));
  if (base.empty() || cand.empty() || !(r.baseline > 0)) {
    r.verdict = GateVerdict::skipped;
    r.note = "no baseline value";
    return r;
  }
  r.change = (r.candidate - r.baseline) / r.baseline;
  r.p_value = mann_whitney_p(base, cand);
  const double worse = higher_is_better ? -r.change : r.change;
  if (worse > r.threshold && *r.p_value < policy.alpha) r.verdict = GateVerdict::regression;
  return r;
}

// A deterministic metric: any change beyond the threshold, either way.
GateRow exact(std::string metric, std::string config, int64_t context, double base, double cand, double threshold) {
  GateRow r;
  r.metric = std::move(metric);
  r.config = std::move(config);
  r.context = context;
  r.n_baseline = r.n_candidate = 1;
  r.baseline = base;
  r.candidate = cand;
  r.threshold = threshold;
  r.change = base != 0 ? (cand - base) / base : (cand == 0 ? 0.0 : INFINITY);
  if (std::fabs(r.change) > threshold) r.verdict = GateVerdict::regression;
  return r;
}

double decode_tok_s(const Sample& s) { return s.decode_ns > 0 ? s.decode_tokens * 1e9 / static_cast<double>(s.decode_ns) : 0; }

template <class F>
std::vector<double> values(const std::vector<const Sample*>& members, F f) {
  std::vector<double> v;
  for (const Sample* s : members) v.push_back(f(*s));
  return v;
}

// Decode tok/s of numerator / denominator, paired by repetition (samples of one repetition ran close in time).
std::vector<double> ratios(const Groups& g, const DecodeRatio& r, int64_t context) {
  std::vector<double> out;
  const auto num = g.find({r.numerator, context}), den = g.find({r.denominator, context});
  if (num == g.end() || den == g.end()) return out;
  std::map<int64_t, double> by_rep;
  for (const Sample* s : den->second) by_rep[s->repetition] = decode_tok_s(*s);
  for (const Sample* s : num->second) {
    const auto it = by_rep.find(s->repetition);
    if (it != by_rep.end() && it->second > 0) out.push_back(decode_tok_s(*s) / it->second);
  }
  return out;
}

// SsdStallPair's metric per repetition: (streamed decode - reference decode) / (decode SSD bytes / drive bandwidth).
// Samples without a drive probe or without SSD reads have none.
std::vector<double> ssd_stalls(const Groups& g, const SsdStallPair& r, int64_t context) {
  std::vector<double> out;
  const auto streamed = g.find({r.streamed, context}), ref = g.find({r.reference, context});
  if (streamed == g.end() || ref == g.end()) return out;
  std::map<int64_t, int64_t> ref_ns;
  for (const Sample* s : ref->second) ref_ns[s->repetition] = s->decode_ns;
  for (const Sample* s : streamed->second) {
    const auto it = ref_ns.find(s->repetition);
    if (it == ref_ns.end() || !(s->drive_read_bps > 0) || s->decode_ssd_bytes_read <= 0) continue;
    const double drive_ns = static_cast<double>(s->decode_ssd_bytes_read) / s->drive_read_bps * 1e9;
    out.push_back(static_cast<double>(s->decode_ns - it->second) / drive_ns);
  }
  return out;
}

// Fraction of the baseline's generated tokens a candidate sample does not reproduce (worst candidate sample).
GateRow greedy(const std::string& config, int64_t context, const std::vector<const Sample*>& base,
               const std::vector<const Sample*>& cand, double threshold) {
  const std::vector<int32_t>& ref = base.front()->output_tokens;
  double worst = 0;
  std::string note;
  for (const Sample* s : cand) {
    const size_t n = std::max(ref.size(), s->output_tokens.size());
    size_t differ = 0, first = n;
    for (size_t i = 0; i < n; ++i) {
      const bool same = i < ref.size() && i < s->output_tokens.size() && ref[i] == s->output_tokens[i];
      if (!same) ++differ, first = std::min(first, i);
    }
    const double frac = n ? static_cast<double>(differ) / static_cast<double>(n) : 0.0;
    if (frac > worst) {
      worst = frac;
      note = fmt::format("repetition {} first differs at token {} of {}", s->repetition, first, n);
    }
  }
  GateRow r = exact("greedy tokens differing", config, context, 0, worst, threshold);
  r.change = worst;
  r.verdict = worst > threshold ? GateVerdict::regression : GateVerdict::ok;
  r.note = note;
  return r;
}

// The "isa=" field of a host fingerprint: "" for runs recorded before it was part of one.
std::string fingerprint_isa(const std::string& fingerprint) {
  const std::string key = "; isa=";
  const auto at = fingerprint.find(key);
  if (at == std::string::npos) return {};
  const auto end = fingerprint.find(';', at + key.size());
  return fingerprint.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

// Why greedy tokens of the two runs do not compare ("" when they do): the CPU kernels' float order follows their
// ISA, and a near tie (TurboQuant's codebook rounding above all) may go either way under another order.
std::string greedy_not_compared(const GateRun& baseline, const GateRun& candidate) {
  const std::string b = fingerprint_isa(baseline.info.host_fingerprint), c = fingerprint_isa(candidate.info.host_fingerprint);
  if (b == c) return {};
  if (b.empty() || c.empty())
    return fmt::format("not compared: the {} does not name its CPU kernels' ISA", b.empty() ? "baseline" : "candidate");
  return fmt::format("not compared: the CPU kernels differ ({} vs {})", b, c);
}

void add_group_rows(const GateRun& baseline, const GateRun& candidate, const GatePolicy& p, bool same_host,
                    std::vector<GateRow>& rows) {
  const std::string greedy_note = greedy_not_compared(baseline, candidate);
  const Groups base = groups_of(baseline), cand = groups_of(candidate);
  std::set<int64_t> contexts;
  for (const auto& [key, members] : base) {
    const auto it = cand.find(key);
    if (it == cand.end()) continue;  // reported by the completeness check
    const auto& [config, context] = key;
    const auto& c = it->second;
    contexts.insert(context);
    // A same-looking host may sit on another disk: streaming configs whose probed drives differ by more than
    // kDriveBandwidthTolerance are left to the drive-normalized SSD stall rows.
    constexpr double kDriveBandwidthTolerance = 0.2;
    const double base_drive = median_drive_read_bps(members), cand_drive = median_drive_read_bps(c);
    const bool drives_differ = base_drive > 0 && cand_drive > 0 &&
                               std::fabs(cand_drive - base_drive) > kDriveBandwidthTolerance * base_drive;
    if (same_host && !drives_differ)
      rows.push_back(measured("decode tok/s", config, context, values(members, decode_tok_s), values(c, decode_tok_s),
                              true, p.decode_tok_s, p));
    if (same_host && drives_differ) {
      GateRow r = skipped_row("decode tok/s", config, context,
                              fmt::format("not compared: the drives differ (random reads {:.0f} vs {:.0f} MB/s)",
                                          base_drive / 1e6, cand_drive / 1e6));
      r.baseline = quantile(values(members, decode_tok_s), 0.5);
      r.candidate = quantile(values(c, decode_tok_s), 0.5);
      r.change = r.baseline > 0 ? (r.candidate - r.baseline) / r.baseline : 0.0;
      rows.push_back(std::move(r));
    }
    auto kv_per_token = [](const Sample& s) {
      return static_cast<double>(s.kv_cache_bytes) / static_cast<double>(std::max<int64_t>(1, s.context_tokens + s.decode_tokens));
    };
    rows.push_back(exact("KV bytes/token", config, context, quantile(values(members, kv_per_token), 0.5),
                         quantile(values(c, kv_per_token), 0.5), p.kv_bytes_per_token));
    const auto base_ssd = values(members, decode_ssd_bytes_per_token);
    if (quantile(base_ssd, 0.5) > 0 || quantile(values(c, decode_ssd_bytes_per_token), 0.5) > 0)
      rows.push_back(measured("SSD bytes/decoded token", config, context, base_ssd,
                              values(c, decode_ssd_bytes_per_token), false, p.ssd_bytes_per_decode_token, p));
    auto peak = [](const Sample& s) { return static_cast<double>(s.peak_memory_bytes); };
    rows.push_back(measured("peak memory bytes", config, context, values(members, peak), values(c, peak), false,
                            p.peak_memory_bytes, p));
    if (!members.front()->output_tokens.empty() || !c.front()->output_tokens.empty())
      rows.push_back(greedy_note.empty() ? greedy(config, context, members, c, p.greedy_tokens)
                                         : skipped_row("greedy tokens differing", config, context, greedy_note));
  }
  for (const DecodeRatio& r : p.ratios) {
    for (int64_t context : contexts) {
      const std::string name = r.numerator + "/" + r.denominator;
      if (ratios(base, r, context).empty() && ratios(cand, r, context).empty()) continue;  // configs not in these runs
      rows.push_back(measured("decode tok/s ratio", name, context, ratios(base, r, context), ratios(cand, r, context),
                              true, p.decode_ratio, p));
    }
  }
  for (const SsdStallPair& r : p.ssd_stalls) {
    for (int64_t context : contexts) {
      const std::vector<double> b = ssd_stalls(base, r, context), c = ssd_stalls(cand, r, context);
      if (b.empty() && c.empty()) continue;  // no probed streaming samples in these runs
      rows.push_back(measured("SSD stall / drive time", r.streamed + "/" + r.reference, context, b, c, false,
                              p.ssd_stall, p));
    }
  }
}

// A run's evaluations per config in first-seen order, its sequences pooled (a quality run has one per held-out
// sequence): the tokens and NLL summed, the first error kept.
std::vector<Evaluation> evaluations_per_config(const std::vector<Evaluation>& evaluations) {
  std::vector<Evaluation> out;
  for (const Evaluation& e : evaluations) {
    auto it = std::find_if(out.begin(), out.end(), [&](const Evaluation& x) { return x.config == e.config; });
    if (it == out.end()) {
      it = out.insert(out.end(), Evaluation{});
      it->config = e.config;
    }
    Evaluation& sum = *it;
    sum.tokens += e.tokens;
    sum.nll_sum += e.nll_sum;
    if (e.error && !sum.error) sum.error = e.error;
  }
  return out;
}

void add_perplexity_rows(const GateRun& baseline, const GateRun& candidate, const GatePolicy& p,
                         std::vector<GateRow>& rows, std::vector<std::string>& reasons) {
  const std::vector<Evaluation> cand = evaluations_per_config(candidate.evaluations);
  for (const Evaluation& b : evaluations_per_config(baseline.evaluations)) {
    const std::string& config = b.config;
    const auto it = std::find_if(cand.begin(), cand.end(), [&](const Evaluation& x) { return x.config == config; });
    if (it == cand.end()) {
      reasons.push_back(fmt::format("candidate run {} has no perplexity for {} (the baseline has)", candidate.info.id, config));
      continue;
    }
    const Evaluation& c = *it;
    if (b.error || c.error || b.tokens <= 0 || c.tokens <= 0) continue;  // reported by the completeness check
    if (b.tokens != c.tokens) {
      reasons.push_back(fmt::format("perplexity of {} was evaluated on {} tokens in the baseline and {} in the candidate",
                                    config, b.tokens, c.tokens));
      continue;
    }
    rows.push_back(exact("perplexity", config, 0, std::exp(b.nll_sum / static_cast<double>(b.tokens)),
                         std::exp(c.nll_sum / static_cast<double>(c.tokens)), p.perplexity));
  }
}

}  // namespace

GateReport compare_runs(const GateRun& baseline, const GateRun& candidate, const GatePolicy& policy) {
  GateReport rep;
  rep.baseline = baseline.info;
  rep.candidate = candidate.info;
  rep.policy = policy;
  auto& why = rep.cannot_compare;
  const RunInfo &b = baseline.info, &c = candidate.info;
  if (b.model != c.model || b.model_bytes != c.model_bytes)
    why.push_back(fmt::format("different models: baseline {} ({} bytes), candidate {} ({} bytes)", b.model,
                              b.model_bytes, c.model, c.model_bytes));
  if (b.scenario != c.scenario)
    why.push_back(fmt::format("different scenarios: baseline '{}', candidate '{}'", b.scenario, c.scenario));
  const json mb = measurement_settings(b), mc = measurement_settings(c);
  for (const auto& [key, value] : mb.items())
    if (!mc.contains(key) || mc[key] != value)
      why.push_back(fmt::format("the scenario's '{}' differs: baseline {}, candidate {}", key, value.dump(),
                                mc.contains(key) ? mc[key].dump() : "absent"));
  check_complete(baseline, "baseline", why);
  check_complete(candidate, "candidate", why);

  const bool same_host = !b.host_fingerprint.empty() && b.host_fingerprint == c.host_fingerprint;
  if (!same_host) {
    const std::string msg = fmt::format("absolute times not compared: host fingerprints differ (baseline '{}', candidate '{}')",
                                        b.host_fingerprint, c.host_fingerprint);
    if (policy.require_same_host) why.push_back(msg); else rep.notes.push_back(msg + "; ratios and deterministic metrics are");
  }
  if (!why.empty()) {
    rep.status = GateReport::Status::cannot_compare;
    return rep;
  }
  add_group_rows(baseline, candidate, policy, same_host, rep.rows);
  add_perplexity_rows(baseline, candidate, policy, rep.rows, why);
  if (!why.empty()) {
    rep.status = GateReport::Status::cannot_compare;
  } else if (std::any_of(rep.rows.begin(), rep.rows.end(), [](const GateRow& r) { return r.verdict == GateVerdict::regression; })) {
    rep.status = GateReport::Status::regression;
  }
  return rep;
}

int gate_exit_code(const GateReport& report) {
  switch (report.status) {
    case GateReport::Status::pass: return 0;
    case GateReport::Status::regression: return 1;
    case GateReport::Status::cannot_compare: return 2;
  }
  return 2;
}

GateRun load_gate_run(const ResultsStore& store, int64_t run) {
  const auto info = store.run(run);
  if (!info) throw Error(ErrorKind::invalid_input, "results", fmt::format("results database {}: no run {}", store.path(), run));
  return GateRun{*info, store.samples(run), store.evaluations(run)};
}

}  // namespace lmlab
