// lmlab gate --db FILE --candidate RUN (--baseline RUN [--baseline-file DB] | --baseline-json FILE)
//   [--scenario FILE] [--markdown OUT] [--json OUT] [--threshold X] [--alpha A] [--noise-k K] [--require-same-host]
// lmlab gate --db FILE --candidate RUN --write-baseline FILE
// The regression gate (docs/gate.md): compares the candidate run with a baseline run under the scenario's "gate"
// thresholds, prints the markdown verdict and exits 0 pass, 1 regression, 2 cannot compare (a missing database, run
// or file, an incomplete run, different models or scenarios): CI must tell those apart. --write-baseline exports a
// run as the JSON baseline file that CI compares against (refreshing the committed baseline).
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common.h"
#include "flag_checks.h"
#include "lmlab/gate_report.h"
#include "lmlab/harness.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string db = "results/lmlab.db";
  std::string baseline_file;  // the baseline run lives in another database
  std::string baseline_json;  // the baseline is a JSON file (the committed one)
  std::string scenario;       // its "gate" object holds the thresholds
  std::string write_baseline;
  std::string markdown_out, json_out;
  int64_t baseline = 0, candidate = 0;
  double threshold = -1, alpha = -1, noise_k = -1;
  bool require_same_host = false;
};

GateRun run_from_db(const std::string& db, int64_t run, const char* flag) {
  if (!std::filesystem::exists(db)) throw Error(ErrorKind::invalid_input, flag, fmt::format("no results database at {}", db));
  ResultsStore store = ResultsStore::open_existing(db);
  if (!store.run(run)) throw Error(ErrorKind::invalid_input, flag, fmt::format("{} has no run {}", db, run));
  return load_gate_run(store, run);
}

GateRun run_from_json(const std::string& file) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) throw Error(ErrorKind::invalid_input, "--baseline-json", fmt::format("cannot read {}: {}", file, ec.message()));
  if (size > kMaxGateBaselineBytes)
    throw Error(ErrorKind::invalid_input, "--baseline-json", fmt::format("{} is {} bytes, over the {}-byte limit", file, size, kMaxGateBaselineBytes));
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return gate_run_from_json(text.str(), file);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_input, "--baseline-json", e.what());
  }
}

void write_file(const std::string& path, const std::string& text, const char* flag) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error(ErrorKind::io, flag, fmt::format("cannot write {}", path));
}

int run_gate(const Flags& fl) {
  const GateRun cand = run_from_db(fl.db, fl.candidate, "--candidate");
  if (!fl.write_baseline.empty()) {
    // A baseline with failed or missing samples could never be compared with: refuse it now, not in CI.
    const GateReport self = compare_runs(cand, cand, GatePolicy{});
    if (self.status == GateReport::Status::cannot_compare)
      throw Error(ErrorKind::invalid_input, "--write-baseline", "run " + std::to_string(fl.candidate) +
                  " cannot be a baseline: " + self.cannot_compare.front());
    write_file(fl.write_baseline, gate_run_to_json(cand), "--write-baseline");
    fmt::print(stderr, "lmlab gate: run {} of {} written to {} as a gate baseline\n", fl.candidate, fl.db, fl.write_baseline);
    return 0;
  }
  if (fl.baseline_json.empty() == (fl.baseline == 0))
    throw Error(ErrorKind::invalid_input, "--baseline", "give exactly one of --baseline RUN and --baseline-json FILE");
  const GateRun base = fl.baseline_json.empty()
                           ? run_from_db(fl.baseline_file.empty() ? fl.db : fl.baseline_file, fl.baseline, "--baseline")
                           : run_from_json(fl.baseline_json);
  GatePolicy policy = fl.scenario.empty() ? GatePolicy{} : load_scenario(fl.scenario).gate;
  if (fl.threshold >= 0) policy.decode_tok_s = fl.threshold;
  if (fl.alpha >= 0) policy.alpha = fl.alpha;
  if (fl.noise_k >= 0) policy.noise_k = fl.noise_k;
  if (fl.require_same_host) policy.require_same_host = true;
  const GateReport report = compare_runs(base, cand, policy);
  const std::string md = render_gate_markdown(report);
  fmt::print("{}", md);
  if (!fl.markdown_out.empty()) write_file(fl.markdown_out, md, "--markdown");
  if (!fl.json_out.empty()) write_file(fl.json_out, render_gate_json(report), "--json");
  return gate_exit_code(report);
}

}  // namespace

void register_gate(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("gate", "compare a run with a baseline; exit 1 on a regression, 2 when it cannot compare");
  sub->add_option("--db", fl->db, "results database holding the candidate (and the baseline)")->capture_default_str();
  sub->add_option("--candidate", fl->candidate, "candidate run id")->required()->check(CLI::PositiveNumber);
  sub->add_option("--baseline", fl->baseline, "baseline run id")->check(CLI::PositiveNumber);
  sub->add_option("--baseline-file", fl->baseline_file, "database holding the baseline run (default: --db)");
  sub->add_option("--baseline-json", fl->baseline_json, "baseline file written by --write-baseline (the committed one)");
  sub->add_option("--scenario", fl->scenario, "scenario file whose \"gate\" object sets the thresholds");
  sub->add_option("--markdown", fl->markdown_out, "also write the markdown summary to this file");
  sub->add_option("--json", fl->json_out, "write the verdict as JSON to this file");
  sub->add_option("--write-baseline", fl->write_baseline, "write the candidate run as a JSON baseline file and exit");
  sub->add_option("--threshold", fl->threshold, "decode tok/s: relative slowdown that counts (overrides the scenario)")
      ->check(finite_range(0, 1));
  sub->add_option("--alpha", fl->alpha, "significance level of the Mann-Whitney test (overrides the scenario)")
      ->check(finite_range(0, 1, true));
  sub->add_option("--noise-k", fl->noise_k, "timing thresholds >= this x the baseline's relative IQR (overrides the scenario)")
      ->check(finite_range(0, 100));
  sub->add_flag("--require-same-host", fl->require_same_host, "different host fingerprints exit 2 instead of skipping absolute times");
  // Errors exit 2, not run_guarded's 1, so that "could not compare" never reads as "regressed".
  sub->callback([fl] {
    int rc = 0;
    try {
      rc = run_gate(*fl);
    } catch (const std::exception& e) {
      std::cerr << "lmlab gate: cannot compare: " << e.what() << "\n";
      rc = 2;
    }
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace lmlab::cli
