// lmlab report --db FILE [--run ID | --runs ID,ID,... [--supersede]] [--format ansi|md|csv|json] [--out FILE | --out-dir DIR]
// [--reference FILE] [--color]: renders one run of the results database (default: the latest), or the samples of
// several runs of one sweep as one report (--runs: same scenario, model and host; a sweep too long for one sitting,
// e.g. the H200's 512 / 40K / 100K x 3 repetitions over several device calls, each run keeping its commit; a cell
// measured by two runs counts both as repetitions unless --supersede, where the later run in the list replaces the
// earlier one's samples of that cell and the header says so); --list lists the runs. --out-dir
// (created when absent) writes the markdown report under its conventional name, profiling_results_<host>.md.
// A markdown report written to a file gets its SVG charts beside it (<stem>_decode.svg, ...). ANSI colors
// only on a terminal, and never when NO_COLOR is set (https://no-color.org) or --no-color is given.
// --reference FILE: a scenario file whose "reference" (published decode ratios, e.g. SwiftLM's) the md and ansi
// reports set beside the decode ratios, in place of the runs' own (runs recorded before scenarios carried one).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>

#include "common.h"
#include "lmlab/harness.h"
#include "lmlab/report.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string db = "results/lmlab.db";
  int64_t run = 0;  // 0 = latest
  std::vector<int64_t> runs;  // --runs: several runs' samples in one report
  bool supersede = false;     // --supersede: a later run of --runs re-measuring a (config, context) cell replaces it
  std::string format = "ansi";
  std::string out, out_dir;
  std::string reference;  // --reference: a scenario file whose "reference" block the report shows
  bool color = false, no_color = false;
  bool list = false;
};

// One line per run: what the other flags' RUN ids refer to. A run that never reached its end (killed
// mid-sweep, or still going) is marked INCOMPLETE.
int list_runs(ResultsStore& store) {
  for (const RunInfo& r : store.runs())
    fmt::print("{:>5}  {}  {:<12} {:<24} {:<16} {:>4} samples  {}{}\n", r.id, r.started_at, r.scenario, r.model, r.host,
               store.samples(r.id).size(), r.git_commit, r.state == "running" ? "  INCOMPLETE" : "");
  return 0;
}

// The regression suite's section: the run's own checks, else the latest suite run's (every report shows it).
struct RegressionSection {
  RunInfo run;
  std::vector<RegressionCheck> checks;
};
std::optional<RegressionSection> regression_section(const ResultsStore& store, const RunInfo& run) {
  auto checks = store.regression_checks(run.id);
  if (!checks.empty()) return RegressionSection{run, std::move(checks)};
  const auto latest = store.latest_regression_run();
  if (!latest) return std::nullopt;
  return RegressionSection{*store.run(*latest), store.regression_checks(*latest)};
}

std::string merged_runs_ids(const std::vector<RunInfo>& runs) {
  std::string ids;
  for (const RunInfo& r : runs) ids += (ids.empty() ? "" : ",") + std::to_string(r.id);
  return ids;
}

// --runs: the runs' samples in order into `samples`, the runs into extras.merged_runs, quality from the last run that
// measured it; refuses a missing run, one named twice, and runs of another sweep (scenario, model or host). With
// --supersede, each (config, context) keeps only the samples of the last run in the list that measured it, and
// what was dropped goes into extras.superseded.
// Returns the last run (the report's header and environment).
RunInfo merge_runs(const ResultsStore& store, const Flags& fl, std::vector<Sample>& samples, ReportExtras& extras) {
  for (int64_t id : fl.runs) {
    std::optional<RunInfo> r = store.run(id);
    if (!r) throw Error(ErrorKind::invalid_input, "--runs", fmt::format("{} has no run {}", fl.db, id));
    for (const RunInfo& m : extras.merged_runs)
      if (m.id == id) throw Error(ErrorKind::invalid_input, "--runs", fmt::format("run {} is named twice", id));
    const RunInfo& first = extras.merged_runs.empty() ? *r : extras.merged_runs.front();
    using Field = std::string RunInfo::*;
    for (const auto& [what, field] : {std::pair<const char*, Field>{"scenario", &RunInfo::scenario},
                                      std::pair<const char*, Field>{"model", &RunInfo::model},
                                      std::pair<const char*, Field>{"host", &RunInfo::host}})
      if ((*r).*field != first.*field)
        throw Error(ErrorKind::invalid_input, "--runs",
                    fmt::format("run {} has {} '{}' where run {} has '{}': only runs of one sweep merge", id, what,
                                (*r).*field, first.id, first.*field));
    const std::vector<Sample> more = store.samples(id);
    samples.insert(samples.end(), more.begin(), more.end());
    if (auto q = store.evaluations(id); !q.empty()) extras.quality = std::move(q);
    extras.merged_runs.push_back(std::move(*r));
  }
  if (fl.supersede) extras.superseded = drop_superseded_samples(samples, fl.runs);
  return extras.merged_runs.back();
}

// --reference: the file read and checked as any scenario is, so its reference is what `lmlab bench` would record.
std::string reference_of(const std::string& file) {
  const Scenario s = load_scenario(file);
  if (!s.reference)
    throw Error(ErrorKind::invalid_input, "--reference " + file,
                "the scenario has no \"reference\" block (the published decode ratios to show: scenarios/README.md)");
  return reference_json(s);
}

bool no_color_env() {
  const char* v = std::getenv("NO_COLOR");
  return v != nullptr && v[0] != '\0';
}

// The run's own report, then a compare run's table, then the regression suite's section.
std::string render(const Flags& fl, const RunInfo& run, const std::vector<Sample>& samples, const ReportExtras& extras,
                   bool to_terminal, const std::optional<RegressionSection>& regression,
                   const std::vector<RuntimeInfo>& runtimes) {
  if (fl.format == "csv") return render_csv(run, samples);
  if (fl.format == "json") return render_json(run, samples, extras.quality);
  if (fl.format == "md")
    return render_markdown(run, samples, extras) +
           (runtimes.empty() ? "" : render_compare_markdown(run, runtimes, samples)) +
           (regression ? render_regression_markdown(regression->run, regression->checks) : "");
  const bool color = !fl.no_color && (fl.color || (to_terminal && !no_color_env()));
  return render_ansi(run, samples, color, extras) +
         (runtimes.empty() ? "" : "\n" + render_compare_ansi(run, runtimes, samples, color)) +
         (regression ? render_regression_ansi(regression->run, regression->checks, color) : "");
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw Error(ErrorKind::io, path.string(), "cannot write the report");
}

int run_report(const Flags& fl) {
  if (!std::filesystem::exists(fl.db))
    throw Error(ErrorKind::invalid_input, "--db", fmt::format("no results database at {} (run lmlab bench first)", fl.db));
  if (!fl.out.empty() && !fl.out_dir.empty()) throw Error(ErrorKind::invalid_input, "--out-dir", "conflicts with --out");
  if (!fl.out_dir.empty() && fl.format != "md")
    throw Error(ErrorKind::invalid_input, "--out-dir", "names the markdown report's file: use it with --format md");
  if (!fl.reference.empty() && fl.format != "md" && fl.format != "ansi")
    throw Error(ErrorKind::invalid_input, "--reference",
                "sets ratios beside the decode ratios of the md and ansi reports: use it with one of them");
  RunInfo run;
  std::vector<Sample> samples;
  std::optional<RegressionSection> regression;
  std::vector<RuntimeInfo> runtimes;  // a compare run's: its comparison table too
  ReportExtras extras;
  if (!fl.reference.empty()) extras.reference_json = reference_of(fl.reference);  // checked before the database is read
  {
    ResultsStore store = ResultsStore::open_existing(fl.db);
    if (fl.list) return list_runs(store);
    std::optional<RunInfo> found;
    if (!fl.runs.empty()) {
      found = merge_runs(store, fl, samples, extras);
    } else if (fl.run > 0) {
      found = store.run(fl.run);
      if (!found) throw Error(ErrorKind::invalid_input, "--run", fmt::format("{} has no run {}", fl.db, fl.run));
    } else {
      const auto runs = store.runs();
      if (runs.empty()) throw Error(ErrorKind::invalid_input, "--db", fmt::format("{} holds no runs yet", fl.db));
      found = runs.back();
    }
    run = *found;
    if (fl.runs.empty()) {
      samples = store.samples(run.id);
      extras.quality = store.evaluations(run.id);
    }
    regression = regression_section(store, run);
    runtimes = store.runtimes(run.id);
  }

  std::filesystem::path path = fl.out;
  if (!fl.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(fl.out_dir, ec);
    if (ec) throw Error(ErrorKind::io, "--out-dir " + fl.out_dir, "cannot create the folder: " + ec.message());
    path = std::filesystem::path(fl.out_dir) / markdown_report_file_name(run.host);
  }
  if (fl.format == "md" && !path.empty()) extras.charts = render_svg_charts(run, samples, path.stem().string());
  const std::string text =
      render(fl, run, samples, extras, path.empty() && ::isatty(STDOUT_FILENO), regression, runtimes);
  if (path.empty()) {
    fmt::print("{}", text);
    return 0;
  }
  write_file(path, text);
  for (const SvgChart& c : extras.charts) write_file(path.parent_path() / c.file_name, c.svg);
  fmt::print(stderr, "lmlab report: wrote {} as {} to {}{}\n",
             extras.merged_runs.size() > 1 ? "runs " + merged_runs_ids(extras.merged_runs) : fmt::format("run {}", run.id),
             fl.format, path.string(),
             extras.charts.empty() ? "" : fmt::format(" with {} SVG charts beside it", extras.charts.size()));
  return 0;
}

}  // namespace

void register_report(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("report", "render a run of the results database (ANSI, markdown, CSV, JSON)");
  sub->add_option("--db", fl->db, "results database")->capture_default_str();
  auto* run = sub->add_option("--run", fl->run, "run id (default: the latest run)")->check(CLI::PositiveNumber);
  auto* runs = sub->add_option("--runs", fl->runs,
                               "several runs of one sweep (same scenario, model, host) as one report: ID,ID,... (a "
                               "cell measured by several runs counts each run's samples, unless --supersede)")
                   ->delimiter(',')
                   ->check(CLI::PositiveNumber)
                   ->excludes(run);
  sub->add_flag("--supersede", fl->supersede,
                "with --runs: a (config, context) cell a later run in the list measured keeps only that run's samples "
                "(the earlier runs' are dropped; the header lists them)")
      ->needs(runs);
  sub->add_option("--format", fl->format, "ansi | md | csv | json")
      ->check(CLI::IsMember({"ansi", "md", "csv", "json"}))
      ->capture_default_str();
  sub->add_option("--out", fl->out, "write to this file instead of stdout");
  sub->add_option("--out-dir", fl->out_dir, "with --format md: write DIR/profiling_results_<host>.md");
  sub->add_option("--reference", fl->reference,
                  "a scenario file whose \"reference\" (published decode ratios) is shown beside the decode ratios, "
                  "in place of the runs' own");
  sub->add_flag("--color", fl->color, "ANSI colors even when stdout is not a terminal");
  sub->add_flag("--no-color", fl->no_color, "no ANSI colors even on a terminal");
  sub->add_flag("--list", fl->list, "list the database's runs (id, date, scenario, model, host, samples, commit)");
  sub->callback(guarded([fl] { return run_report(*fl); }));
}

}  // namespace lmlab::cli
