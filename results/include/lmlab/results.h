// lmlab results store: the lab's SQLite database of benchmark runs and raw samples, and the statistics
// computed from them (summaries and the regression gate).
//
// Invariants:
// - Only raw measurements are stored (token counts, nanoseconds, bytes); rates, medians and percentiles are
//   computed here from samples, never written to the database.
// - The schema is versioned with PRAGMA user_version. open() creates the schema in an empty file, applies
//   migrations from any older version in order inside one transaction, and refuses (ResultsError naming the
//   file and both versions) a database written by a newer lmlab, a SQLite file that is not an lmlab database,
//   or a file that is not SQLite at all. It never drops or rewrites existing data.
// - Nothing here depends on the engine; the engine knows nothing of the lab.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace lmlab {

// Every failure of the results store (open, schema, migration, query) carries a message naming the file.
class ResultsError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Schema version this code writes and understands (PRAGMA user_version).
// v1: runs, samples. v2: samples.ssd_bytes_read and runs.git_commit added. v3: runs.environment and the
// quality table (per-config perplexity and KL divergence sums).
inline constexpr int kResultsSchemaVersion = 3;

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
  // The machine and build the run was measured on (CPU, cores, RAM, GPU and driver, OS, compiler, build
  // type, the binary's commit) as a JSON object; "{}" for runs recorded before schema v3.
  std::string environment_json = "{}";
};

// One raw measurement: one generation at one (config, context) for one repetition.
struct Sample {
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
  std::optional<int64_t> gpu_memory_bytes;  // absent on CPU runs
  std::optional<std::string> error;         // set when the generation failed; its numbers are then ignored
};

// One config's teacher-forced evaluation on one held-out token sequence, as raw sums: perplexity is
// exp(nll_sum / tokens) and the mean KL divergence from the reference config is kl_sum / tokens.
struct QualitySample {
  std::string config;
  int64_t sequence = 0;       // which held-out sequence (e.g. the golden file's eval_ids_<sequence>)
  int64_t tokens = 0;         // predicted tokens (sequence length - 1)
  double nll_sum = 0;         // sum over tokens of -log p(next token)
  std::optional<double> kl_sum;  // sum over tokens of KL(reference || config); unset for the reference itself
  std::string reference_config;  // the config the KL is measured against (the run's vanilla config)
};

class ResultsStore {
public:
  // Opens (creating if absent) the database at path; see the invariants above. Throws ResultsError.
  static ResultsStore open(const std::string& path);

  ResultsStore(ResultsStore&&) noexcept;
  ResultsStore& operator=(ResultsStore&&) noexcept;
  ~ResultsStore();

  const std::string& path() const;
  int schema_version() const;  // always kResultsSchemaVersion after open()

  int64_t begin_run(const RunInfo& info);
  void add_sample(int64_t run, const Sample& sample);
  // Inserts many samples in one transaction (all or none).
  void add_samples(int64_t run, const std::vector<Sample>& samples);

  void add_quality(int64_t run, const QualitySample& quality);

  std::vector<RunInfo> runs() const;  // ordered by id
  std::optional<RunInfo> run(int64_t id) const;
  std::vector<Sample> samples(int64_t run) const;  // ordered by insertion
  std::vector<QualitySample> quality(int64_t run) const;  // ordered by insertion

  struct Impl;

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

// Per-config quality over every sequence of that config: perplexity = exp(sum nll / sum tokens), KL = sum kl /
// sum tokens (unset for the reference config). In the order configs first appear.
struct QualitySummary {
  std::string config;
  int64_t tokens = 0;
  double perplexity = 0;
  std::optional<double> kl_divergence;
  std::string reference_config;
};
std::vector<QualitySummary> summarize_quality(const std::vector<QualitySample>& quality);

// Value at quantile p in [0,1] of values (linear interpolation); NaN when empty.
double quantile(std::vector<double> values, double p);

// Two-sided Mann–Whitney U test p-value (normal approximation with tie correction and continuity
// correction). Returns 1 when either side is empty or all values are tied.
double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b);

// Regression gate for one (config, context) present in both sample sets.
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

// True when any GateResult is a regression.
bool any_regression(const std::vector<GateResult>& results);

}  // namespace lmlab
