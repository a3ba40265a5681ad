// lmlab regression [SCENARIO] --db FILE [--url URL] [--models a,b] [--references F] [--save-references F]
//   [--work-dir DIR]: the prompt-cache and sliding-window regression suite (lmlab/regression.h) against a fresh
// `lmlab serve` (or the server at --url). Every check is stored; exit 1 naming each failing step, 0 when all pass.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lab_flags.h"
#include "lmlab/harness.h"
#include "lmlab/regression.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string scenario = "scenarios/regression.json";
  std::string db = "results/lmlab.db";
  std::string url, references, save_references, work_dir, host;
  std::vector<std::string> models;
};

// What failed, short enough for one line (answers can be long).
std::string shorten(const std::string& s) { return s.size() > 80 ? s.substr(0, 77) + "..." : s; }

int run_regression_cmd(const Flags& fl) {
  const RegressionScenario scenario = load_regression_scenario(fl.scenario);
  RegressionSettings settings;
  settings.lmlab_exe = std::filesystem::read_symlink("/proc/self/exe");
  if (!fl.url.empty()) settings.url = fl.url;
  settings.only_models = fl.models;
  if (!fl.references.empty()) settings.references_in = fl.references;
  if (!fl.save_references.empty()) settings.references_out = fl.save_references;
  const bool temp_work = fl.work_dir.empty();
  settings.work_dir = temp_work ? std::filesystem::temp_directory_path() / fmt::format("lmlab-regression-{}", ::getpid())
                                : std::filesystem::path(fl.work_dir);
  settings.host = fl.host;
  settings.git_commit = build_info().git_commit;
  settings.progress = &std::cerr;
  RegressionOutcome outcome;
  try {
    with_results_db(fl.db, [&](ResultsStore& store) {
      outcome = run_regression(scenario, store, settings);
      return 0;
    });
  } catch (...) {
    if (temp_work) std::filesystem::remove_all(settings.work_dir);
    throw;
  }
  if (temp_work) std::filesystem::remove_all(settings.work_dir);
  const auto failed = outcome.failures();
  for (const RegressionCheck& c : failed)
    fmt::print(stderr, "lmlab regression: FAILED {} step {}: {} expected {}, got {}\n", c.model, c.step, c.check,
               shorten(c.expected), shorten(c.got));
  fmt::print(stderr, "lmlab regression: run {} stored in {}: {} checks, {} failed — {}\n", outcome.run_id, fl.db,
             outcome.checks.size(), failed.size(), failed.empty() ? "passed" : "FAILED");
  fmt::print("{}\n", outcome.run_id);
  return failed.empty() ? 0 : 1;
}

}  // namespace

void register_regression(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("regression", "prompt-cache and sliding-window regression suite over HTTP");
  sub->add_option("scenario", fl->scenario, "regression scenario (JSON)")->capture_default_str();
  sub->add_option("--db", fl->db, "results database (created if absent)")->capture_default_str();
  sub->add_option("--url", fl->url, "a running OpenAI-compatible lmlab server instead of a fresh lmlab serve");
  sub->add_option("--models", fl->models, "run only these models of the scenario")->delimiter(',');
  sub->add_option("--references", fl->references, "reference answers (JSON) instead of a cold server's");
  sub->add_option("--save-references", fl->save_references, "write the reference answers used (JSON)");
  sub->add_option("--work-dir", fl->work_dir, "where synth models are made and kept (default: a temporary folder)");
  sub->add_option("--host", fl->host, "host name to record (default: this machine's)");
  sub->callback(guarded([fl] { return run_regression_cmd(*fl); }));
}

}  // namespace lmlab::cli
