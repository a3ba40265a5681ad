// lmlab compare SCENARIO --runtime NAME=lmlab|serve|URL ... [--db FILE] [--model DIR] [--contexts ...] [--reps N]
//   [--decode-tokens N]: the scenario's prompts on several runtimes side by side (lmlab/harness.h run_compare),
// stored as one run; prints the comparison table (ANSI, or markdown with --format md) and the run id last.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lmlab/harness.h"
#include "lmlab/report.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string scenario, db = "results/lmlab.db", model, host, format = "ansi";
  std::vector<std::string> runtimes;
  std::vector<int64_t> contexts;
  int64_t reps = 0, decode_tokens = 0, ctx_size = -1;
  int threads = -1;
};

int run_compare_cmd(const Flags& fl) {
  Scenario scenario = load_scenario(fl.scenario);
  ScenarioOverrides o;
  if (!fl.model.empty()) o.model = std::filesystem::absolute(fl.model).lexically_normal();
  if (!fl.contexts.empty()) o.contexts = fl.contexts;
  if (fl.reps != 0) o.repetitions = fl.reps;
  if (fl.decode_tokens != 0) o.decode_tokens = fl.decode_tokens;
  if (fl.ctx_size >= 0) o.ctx_size = fl.ctx_size;
  if (fl.threads >= 0) o.threads = fl.threads;
  apply_overrides(scenario, o);
  std::vector<RuntimeSpec> runtimes;
  for (const auto& r : fl.runtimes) runtimes.push_back(parse_runtime_spec(r));
  const std::filesystem::path db(fl.db);
  if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
  try {
    ResultsStore store = ResultsStore::open(fl.db);
    RunSettings settings;
    settings.host = fl.host;
    settings.git_commit = git_describe(std::filesystem::current_path());
    settings.progress = &std::cerr;
    settings.lmlab_exe = std::filesystem::read_symlink("/proc/self/exe");
    const RunOutcome outcome = run_compare(scenario, runtimes, store, settings);
    const RunInfo run = *store.run(outcome.run_id);
    const auto samples = store.samples(outcome.run_id);
    const auto rts = store.runtimes(outcome.run_id);
    fmt::print("{}", fl.format == "md" ? render_compare_markdown(run, rts, samples)
                                       : render_compare_ansi(run, rts, samples, ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR")));
    fmt::print(stderr, "lmlab compare: run {} stored in {}: {} samples, {} failed\n", outcome.run_id, fl.db,
               outcome.samples, outcome.errors);
    fmt::print("{}\n", outcome.run_id);
    return outcome.errors == 0 ? 0 : 1;
  } catch (const ResultsError& e) {
    throw Error(ErrorKind::io, "--db " + fl.db, e.what());
  }
}

}  // namespace

void register_compare(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("compare", "the same scenario prompts on several runtimes, side by side");
  sub->add_option("scenario", fl->scenario, "scenario file (JSON); lmlab runtimes use its first config")->required();
  sub->add_option("--runtime", fl->runtimes, "NAME=lmlab (in process) | NAME=serve (lmlab serve) | NAME=http://HOST:PORT")
      ->required();
  sub->add_option("--db", fl->db, "results database (created if absent)")->capture_default_str();
  sub->add_option("--model", fl->model, "model directory (overrides the scenario's; URL runtimes must serve the same model)");
  sub->add_option("--contexts", fl->contexts, "context lengths in tokens")->delimiter(',');
  sub->add_option("--reps", fl->reps, "repetitions per runtime and context");
  sub->add_option("--decode-tokens", fl->decode_tokens, "tokens decoded per sample");
  sub->add_option("--ctx-size", fl->ctx_size, "engine context size of lmlab runtimes");
  sub->add_option("--threads", fl->threads, "CPU threads of lmlab runtimes (0 = all)");
  sub->add_option("--format", fl->format, "ansi | md")->check(CLI::IsMember({"ansi", "md"}))->capture_default_str();
  sub->add_option("--host", fl->host, "host name to record (default: this machine's)");
  sub->callback(guarded([fl] { return run_compare_cmd(*fl); }));
}

}  // namespace lmlab::cli
