// lmlab gate: compares a candidate run with a baseline run (docs/gate.md) and says pass, regression or "cannot
// compare". Pure functions over results data; the baseline may come from a database or from a committed JSON file.
//
// What is compared (per (config, context) unless said otherwise):
// - measured metrics, one-sided, on the raw samples with a Mann-Whitney test: decode tok/s (absolute: only when both
//   runs carry the same host fingerprint and, for expert streaming, drives of like bandwidth), decode tok/s ratios
//   between configs of one run (paired by repetition: survives a change of machine), SSD stall per drive time (see
//   SsdStallPair), SSD bytes per decoded token and peak memory (higher is worse). A row regresses
//   iff its median is worse by more than max(threshold, noise_k x the baseline's relative IQR) AND p < alpha.
// - deterministic metrics, two-sided, no test: KV bytes per token, perplexity per config, greedy tokens. Any change
//   beyond the threshold fails, an "improvement" too: the baseline must then be refreshed in the same change.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/results.h"

namespace lmlab {

// Everything the gate reads of one run.
struct GateRun {
  RunInfo info;
  std::vector<Sample> samples;
  std::vector<Evaluation> evaluations;
};

GateRun load_gate_run(const ResultsStore& store, int64_t run);  // throws lmlab::Error (invalid_input) when the run is absent

// The committed baseline file: {"lmlab_gate_baseline": 1, "run": {...}, "samples": [...], "evaluations": [...]}.
std::string gate_run_to_json(const GateRun& run);
// Bounded (kMaxGateBaselineBytes) and checked field by field; throws lmlab::Error (invalid_input) naming `file` and the field.
inline constexpr size_t kMaxGateBaselineBytes = 16u << 20;
GateRun gate_run_from_json(std::string_view text, const std::string& file);

struct DecodeRatio {
  std::string numerator, denominator;  // config names: decode tok/s of numerator / denominator
};

// Expert streaming judged against this machine's drive: the decode time `streamed` adds over `reference` (the same
// model with every expert in memory), divided by the time the drive needs for the bytes read during decode at the
// bandwidth probed beside each sample (Sample::drive_read_bps). 1 = as slow as reading those bytes one after
// another at the drive's speed; lower is better. The drive's speed divides out, so the metric survives a move to a
// machine with another disk, which the plain decode ratio streamed/reference does not.
struct SsdStallPair {
  std::string streamed, reference;
};

// Thresholds are relative changes (0.1 = 10%). Defaults suit two runs on one quiet machine; scenarios set theirs.
struct GatePolicy {
  double alpha = 0.01;   // significance level of the Mann-Whitney test
  double noise_k = 2.0;  // measured metrics: threshold >= noise_k x the baseline's relative IQR
  double decode_tok_s = 0.10;
  double decode_ratio = 0.15;
  double ssd_bytes_per_decode_token = 0.10;
  double ssd_stall = 0.25;
  double peak_memory_bytes = 0.10;
  double kv_bytes_per_token = 0.0;
  double perplexity = 0.001;
  double greedy_tokens = 0.0;  // fraction of a sample's generated tokens that may differ from the baseline's
  std::vector<DecodeRatio> ratios;
  std::vector<SsdStallPair> ssd_stalls;
  bool require_same_host = false;  // true: different host fingerprints cannot compare (exit 2), not just skip
};

enum class GateVerdict { ok, regression, skipped };

struct GateRow {
  std::string metric;  // "decode tok/s", "decode tok/s ratio", "KV bytes/token", ...
  std::string config;  // for ratios "turbo/vanilla"
  int64_t context = 0;  // 0: not per context (perplexity)
  double baseline = 0, candidate = 0;  // medians (or the exact values)
  int n_baseline = 0, n_candidate = 0;
  double change = 0;     // (candidate - baseline) / baseline
  double threshold = 0;  // the threshold applied (after the noise floor)
  std::optional<double> p_value;  // measured metrics only
  GateVerdict verdict = GateVerdict::ok;
  std::string note;  // why skipped, or what changed (greedy tokens)
};

struct GateReport {
  enum class Status { pass, regression, cannot_compare };
  Status status = Status::pass;
  std::vector<std::string> cannot_compare;  // reasons, said plainly (status cannot_compare)
  std::vector<std::string> notes;           // e.g. why absolute times were not compared
  RunInfo baseline, candidate;
  GatePolicy policy;
  std::vector<GateRow> rows;
};

GateReport compare_runs(const GateRun& baseline, const GateRun& candidate, const GatePolicy& policy);

// 0 pass, 1 regression, 2 cannot compare.
int gate_exit_code(const GateReport& report);

}  // namespace lmlab
