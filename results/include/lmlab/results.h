// lmlab results store: the lab's SQLite database of benchmark runs and raw samples, and the statistics
// computed from them (summaries and the regression gate).
//
// Invariants:
// - Only raw measurements are stored (token counts, nanoseconds, bytes); rates, medians and percentiles are
//   computed here from samples, never written to the database.
// - The schema is versioned with PRAGMA user_version. open() creates the schema in an empty file, applies
//   migrations from any older version in order inside one transaction, and refuses (lmlab::Error naming the
//   file and both versions) a database written by a newer lmlab, a SQLite file that is not an lmlab database,
//   or a file that is not SQLite at all. It never drops or rewrites existing data.
// - Nothing here depends on the engine but its error type (lmlab/error.h: every failure is an lmlab::Error,
//   kind io for SQLite failures, invalid_input for a file that is not an lmlab database or a bad argument,
//   unsupported for a newer schema); the engine knows nothing of the lab.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lmlab/error.h"

namespace lmlab {

// Schema version this code writes and understands (PRAGMA user_version).
// v1: runs, samples. v2: samples.ssd_bytes_read and runs.git_commit added. v3: runs.host_fingerprint,
// samples.decode_ssd_bytes_read and samples.output_tokens, the evaluations table. v4: runs.state (a run killed
// mid-sweep stays 'running'), samples.chunk_ns (HTTP runs), the runtimes and regression_checks tables. v5:
// runs.environment; evaluations.sequence, kl_sum and reference_config (quality per config).
inline constexpr int kResultsSchemaVersion = 6;

// One benchmark run (one scenario on one host with one model).
struct RunInfo {
  int64_t id = 0;                 // assigned by begin_run(); ignored on insert
  std::string started_at;         // ISO-8601 UTC, e.g. "2026-11-26T15:59:21Z"; empty = now
  std::string host;
  std::string scenario;
  std::string model;
  int64_t model_bytes = 0;
  std::string engine_config_json = "{}";  // engine configuration as JSON text
  std::string git_commit;
  std::string notes;
  // What decides whether absolute times compare (CPU model, CPU kernels' ISA, CPUs usable, memory); see
  // host_fingerprint().
  std::string host_fingerprint;
  // "running" from begin_run() until end_run(): a run still "running" after its process is gone was killed
  // mid-sweep (incomplete). "complete" after end_run(). "unrecorded": written before schema v4.
  std::string state = "running";
  // The machine and build the run was measured on (CPU, cores, RAM, GPU and driver, OS, compiler, build
  // type, the binary's commit) as a JSON object; "{}" for runs recorded before schema v5. host_fingerprint is
  // derived from the same probe (lmlab::host_fingerprint(const Environment&)).
  std::string environment_json = "{}";
};

// One raw measurement: one generation at one (config, context) for one repetition.
struct Sample {
  int64_t run_id = 0;             // the run it belongs to: set by ResultsStore::samples, ignored on insert
  std::string config;             // "vanilla", "ssd", "turbo", "ssd+turbo", ...
  int64_t context_tokens = 0;
  int64_t repetition = 0;
  int64_t prompt_tokens = 0;
  int64_t prompt_ns = 0;
  int64_t decode_tokens = 0;
  int64_t decode_ns = 0;
  int64_t ttft_ns = 0;
  int64_t peak_memory_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t ssd_bytes_read = 0;
  int64_t decode_ssd_bytes_read = 0;  // of which read after the first decode step (decode_tokens - 1 steps)
  // Samples that stream experts (in process): the drive's O_DIRECT random-read bandwidth, bytes/s, probed right
  // after the sample on the model's file at the sample's mean read size and the config's queue depth; 0 = not
  // probed. It lets the gate judge streaming against this machine's drive rather than another one's.
  double drive_read_bps = 0;
  std::vector<int32_t> output_tokens;  // the tokens generated (greedy: deterministic)
  std::optional<int64_t> gpu_memory_bytes;  // absent on CPU runs
  std::optional<std::string> error;         // set when the generation failed; its numbers are then ignored
  // Runs over HTTP: arrival of each streamed chunk that carried text, in ns after the request was sent (the
  // raw data of TTFT and inter-token latency). Empty for in-process runs.
  std::vector<int64_t> chunk_ns;
};

// A runtime of an `lmlab compare` run: its samples carry `name` as their config.
struct RuntimeInfo {
  std::string name;     // as given on the command line (NAME=...)
  std::string kind;     // "in-process" | "serve" | "url"
  std::string target;   // the URL, or the model directory for lmlab runtimes
  std::string version;  // what the runtime says it is (git commit, build info), "unknown" when it does not say
};

// One check of the regression suite (`lmlab regression`): what was expected, what the server gave.
struct RegressionCheck {
  std::string model;  // which model (scenario entry) the check ran on
  std::string step;   // e.g. "1 long", "4 long again", "concurrent", "budgets"
  std::string check;  // e.g. "answer", "prompt_cache_hits", "kv_cache_peak_bytes"
  std::string expected;
  std::string got;
  bool pass = false;
};

// One teacher-forced evaluation of a config on one held-out token sequence, as raw sums: perplexity is
// exp(nll_sum / tokens) and the mean KL divergence from the reference config is kl_sum / tokens. The scenario's
// perplexity_tokens give one per config (sequence 0, no KL); its "quality" one per config and golden sequence.
struct Evaluation {
  std::string config;
  int64_t tokens = 0;                // predicted tokens (sequence length - 1)
  double nll_sum = 0;                // sum over tokens of -log p(next token)
  std::optional<std::string> error;  // set when the evaluation failed
  int64_t sequence = 0;              // which held-out sequence (e.g. the golden file's eval_ids_<sequence>)
  std::optional<double> kl_sum;      // sum over tokens of KL(reference || config); unset without a reference
  std::string reference_config;      // the config the KL is measured against (the run's vanilla config)
};

class ResultsStore {
public:
  // Opens (creating if absent) the database at path; see the invariants above. Throws lmlab::Error.
  static ResultsStore open(const std::string& path);
  // For readers (report, gate): opens only an existing lmlab database (migrating an older one); a missing
  // file, an empty file or an empty SQLite database is refused like a foreign one and left untouched.
  static ResultsStore open_existing(const std::string& path);

  ResultsStore(ResultsStore&&) noexcept;
  ResultsStore& operator=(ResultsStore&&) noexcept;
  ~ResultsStore();

  const std::string& path() const;
  int schema_version() const;  // always kResultsSchemaVersion after open()

  int64_t begin_run(const RunInfo& info);  // state "running"
  void end_run(int64_t run);                // state "complete"
  void add_sample(int64_t run, const Sample& sample);
  // Inserts many samples in one transaction (all or none).
  void add_samples(int64_t run, const std::vector<Sample>& samples);

  std::vector<RunInfo> runs() const;  // ordered by id
  std::optional<RunInfo> run(int64_t id) const;
  std::vector<Sample> samples(int64_t run) const;  // ordered by insertion

  // Refuses an evaluation of no tokens unless it records an error.
  void add_evaluation(int64_t run, const Evaluation& evaluation);
  std::vector<Evaluation> evaluations(int64_t run) const;  // ordered by insertion

  void add_runtime(int64_t run, const RuntimeInfo& runtime);
  std::vector<RuntimeInfo> runtimes(int64_t run) const;  // in insertion order
  void add_regression_check(int64_t run, const RegressionCheck& check);
  std::vector<RegressionCheck> regression_checks(int64_t run) const;  // in insertion order
  // The latest run holding regression checks, if any (what reports of other runs show as their section).
  std::optional<int64_t> latest_regression_run() const;

  struct Impl;
  static ResultsStore from_impl(std::unique_ptr<Impl> impl);

private:
  explicit ResultsStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- statistics (pure functions over samples) ----

// Per (config, context_tokens) summary over successful samples (error unset, decode_ns > 0).
// Percentiles use linear interpolation between order statistics (rank p*(n-1), numpy's default).
struct Summary {
  std::string config;
  int64_t context = 0;
  int n = 0;  // successful samples
  int errors = 0;
  double decode_tok_s_median = 0, decode_tok_s_p10 = 0, decode_tok_s_p90 = 0;
  double ttft_ms_median = 0;
  int64_t peak_memory_bytes_max = 0;
  double ssd_bytes_read_median = 0;
};

// Groups by (config, context), sorted by config then context.
std::vector<Summary> summarize(const std::vector<Sample>& samples);

// `lmlab report --runs A,B,C --supersede`: samples of an earlier run of the list dropped because a later run of
// the list measured the same (config, context) cell again (usually with a newer binary).
struct SupersededCell {
  std::string config;
  int64_t context = 0;
  int64_t run = 0;     // whose samples were dropped
  int64_t by_run = 0;  // the later run whose samples the cell keeps
  int samples = 0;     // how many were dropped
};

// Keeps, in each (config, context), only the samples of the latest run in `run_order` that has any there (failed
// samples count: a later failure is the newer binary's result); the rest keep their order. Returns what was
// dropped, ordered by the dropped run's then the superseding run's place in run_order. Every sample's run_id
// must be in run_order.
std::vector<SupersededCell> drop_superseded_samples(std::vector<Sample>& samples, const std::vector<int64_t>& run_order);

// Per-config quality over every sequence of that config: perplexity = exp(sum nll / sum tokens), KL = sum kl /
// sum tokens (unset for the reference config). In the order configs first appear.
struct QualitySummary {
  std::string config;
  int64_t tokens = 0;
  double perplexity = 0;
  std::optional<double> kl_divergence;
  std::string reference_config;
};
std::vector<QualitySummary> summarize_quality(const std::vector<Evaluation>& evaluations);

// Value at quantile p in [0,1] of values (linear interpolation); NaN when empty.
double quantile(std::vector<double> values, double p);

// The median drive_read_bps of the samples whose drive was probed (> 0); 0 when none was.
double median_drive_read_bps(const std::vector<const Sample*>& samples);

// Two-sided Mann–Whitney U test p-value (normal approximation with tie correction and continuity
// correction). Returns 1 when either side is empty or all values are tied.
double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b);

// Regression gate for one (config, context) present in both sample sets: decode tok/s only. `lmlab gate` (CI) uses
// the fuller compare_runs() of lmlab/gate.h (more metrics, noise floor, cannot-compare checks).
//
// Rule: let rel = (candidate_median - baseline_median) / baseline_median of decode tok/s. A group is a
// regression iff rel < -threshold (slower by more than the relative threshold) AND the Mann–Whitney U test
// of the two samples' decode tok/s gives p < alpha (0.05). Either alone is not enough: a large but noisy
// change, or a significant but small one, passes. Groups in only one of the two sets are reported with
// compared = false and never flagged. (Small sets: with n < 4 per side the test cannot reach p < 0.05, so
// nothing is flagged; use more repetitions.)
struct GateResult {
  std::string config;
  int64_t context = 0;
  bool compared = false;  // both sides had successful samples
  int n_baseline = 0, n_candidate = 0;
  double baseline_decode_tok_s_median = 0, candidate_decode_tok_s_median = 0;
  double relative_change = 0;  // (candidate - baseline) / baseline; negative = slower
  double p_value = 1;
  bool regression = false;
};

std::vector<GateResult> gate(const std::vector<Sample>& baseline, const std::vector<Sample>& candidate,
                             double threshold = 0.05, double alpha = 0.05);

// Per (config, context) figures of samples that carry chunk arrival times (chunk_ns), in the order groups first
// appear: TTFT median (ms), inter-token latency p50 / p99 (ms) over every gap between consecutive chunks of
// the group's successful samples pooled, decode tok/s median (chunks after the first over first -> last chunk,
// else decode_tokens / decode_ns). NaN where a group has no such data.
struct StreamSummary {
  std::string config;
  int64_t context = 0;
  int n = 0, errors = 0;
  double ttft_ms_median = 0, itl_ms_p50 = 0, itl_ms_p99 = 0, decode_tok_s_median = 0;
  int64_t decode_tokens_median = 0;
};
std::vector<StreamSummary> summarize_streams(const std::vector<Sample>& samples);

// True when any GateResult is a regression.
bool any_regression(const std::vector<GateResult>& results);

// ---- figures of raw engine measurements (figures.cpp): the engine returns samples, the lab derives ----

double per_second(double count, double seconds);  // 0 when seconds <= 0

// The decode steps a sample's decode_ssd_bytes_read covers: every one but the first (the harness counts the bytes
// from the first token's event on, in_process_source.cpp), so decode_tokens - 1; 0 when it decoded at most one.
int64_t decode_ssd_steps(const Sample& s);
// decode_ssd_bytes_read / decode_ssd_steps(): the SSD bytes one decoded token read; 0 without such steps.
double decode_ssd_bytes_per_token(const Sample& s);

// lmlab iobench's read latencies (quantile's interpolation); zeros when there are none.
struct LatencyFigures {
  double p50_s = 0, p99_s = 0, max_s = 0;
};
LatencyFigures latency_figures(std::vector<double> latencies_s);

// A memory plan's decode speed from the bytes one token touches: tok_s 0 and basis "" when a bandwidth it needs
// is unknown (0); basis "memory", "ssd" (drive-bound only: an upper bound) or "memory+ssd".
struct DecodeEstimate {
  double tok_s = 0;
  std::string basis;
};
DecodeEstimate estimate_decode(uint64_t bytes_per_token, uint64_t ssd_bytes_per_token, double memory_bytes_per_second,
                               double ssd_bytes_per_second);

// lmlab decode-bench: one prefill and one duration per decode step.
struct DecodeBenchFigures {
  double prefill_tok_s = 0, decode_tok_s = 0;  // decode: steps / their summed time
  double step_ms_p50 = 0, step_ms_p90 = 0;
};
DecodeBenchFigures decode_bench_figures(int64_t prefill_tokens, int64_t prefill_ns, const std::vector<int64_t>& step_ns);

}  // namespace lmlab
