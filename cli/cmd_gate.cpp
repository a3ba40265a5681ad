// lmlab gate --db FILE --baseline RUN --candidate RUN [--baseline-file FILE] [--threshold 0.05] [--alpha 0.05]:
// the regression gate. Compares decode tok/s per (config, context) with results' gate() (slower by more than
// the threshold AND Mann-Whitney p < alpha), prints one row per group and exits 1 on a regression,
// 0 when none, 2 when the gate could not run (missing database or run): CI must tell those apart.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string db = "results/lmlab.db";
  std::string baseline_file;  // the baseline run lives in another database (e.g. a committed baseline)
  int64_t baseline = 0, candidate = 0;
  double threshold = 0.05, alpha = 0.05;
};

std::vector<Sample> samples_of(const std::string& db, int64_t run, const char* flag) {
  if (!std::filesystem::exists(db)) throw Error(ErrorKind::invalid_input, flag, fmt::format("no results database at {}", db));
  try {
    ResultsStore store = ResultsStore::open_existing(db);
    if (!store.run(run)) throw Error(ErrorKind::invalid_input, flag, fmt::format("{} has no run {}", db, run));
    return store.samples(run);
  } catch (const ResultsError& e) {
    throw Error(ErrorKind::io, db, e.what());
  }
}

std::string verdict(const GateResult& r) {
  if (!r.compared) return r.n_baseline == 0 ? "only in candidate (or baseline failed)" : "only in baseline (or candidate failed)";
  if (r.regression) return "REGRESSION";
  if (r.n_baseline < 4 || r.n_candidate < 4) return "ok (fewer than 4 samples a side: cannot flag)";
  return "ok";
}

int run_gate(const Flags& fl) {
  const std::string baseline_db = fl.baseline_file.empty() ? fl.db : fl.baseline_file;
  const auto base = samples_of(baseline_db, fl.baseline, "--baseline");
  const auto cand = samples_of(fl.db, fl.candidate, "--candidate");
  const std::vector<GateResult> results = gate(base, cand, fl.threshold, fl.alpha);
  fmt::print("gate: candidate run {} ({}) vs baseline run {} ({}); regression = slower by > {:.1f}% and "
             "Mann-Whitney p < {}\n",
             fl.candidate, fl.db, fl.baseline, baseline_db, fl.threshold * 100, fl.alpha);
  fmt::print("{:<12} {:>8} {:>18} {:>18} {:>9} {:>8}  {}\n", "config", "context", "baseline tok/s (n)",
             "candidate tok/s (n)", "change", "p", "verdict");
  for (const GateResult& r : results) {
    fmt::print("{:<12} {:>8} {:>18} {:>18} {:>9} {:>8}  {}\n", r.config, r.context,
               fmt::format("{:.1f} ({})", r.baseline_decode_tok_s_median, r.n_baseline),
               fmt::format("{:.1f} ({})", r.candidate_decode_tok_s_median, r.n_candidate),
               r.compared ? fmt::format("{:+.1f}%", r.relative_change * 100) : std::string("-"),
               r.compared ? fmt::format("{:.4f}", r.p_value) : std::string("-"), verdict(r));
  }
  const bool regressed = any_regression(results);
  fmt::print("gate: {}\n", regressed ? "FAILED (regression)" : "passed");
  return regressed ? 1 : 0;
}

}  // namespace

void register_gate(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("gate", "compare a run with a baseline run; exit 1 on a decode-speed regression");
  sub->add_option("--db", fl->db, "results database holding the candidate (and the baseline)")->capture_default_str();
  sub->add_option("--baseline", fl->baseline, "baseline run id")->required();
  sub->add_option("--candidate", fl->candidate, "candidate run id")->required();
  sub->add_option("--baseline-file", fl->baseline_file, "database holding the baseline run (default: --db)");
  sub->add_option("--threshold", fl->threshold, "relative slowdown that counts (0.05 = 5%)")->capture_default_str();
  sub->add_option("--alpha", fl->alpha, "significance level of the Mann-Whitney test")->capture_default_str();
  // Errors exit 2, not run_guarded's 1, so that "could not compare" never reads as "regressed".
  sub->callback([fl] {
    int rc = 0;
    try {
      rc = run_gate(*fl);
    } catch (const std::exception& e) {
      std::cerr << "lmlab: " << e.what() << "\n";
      rc = 2;
    }
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace lmlab::cli
