// lmlab report: renderers of one results run (its RunInfo, raw samples and quality) as an ANSI console report,
// a markdown profiling report (profiling_results_<host>.md) with SVG charts beside it, CSV and JSON. Renderers
// format; the statistics come from results/ (summarize(), summarize_quality(), quantile()). Depends on
// results only. Reports show the preset configs as Vanilla / SSD Stream / TurboQuant / SSD + TurboQuant.
#pragma once

#include <string>
#include <vector>

#include "lmlab/results.h"

namespace lmlab {

// One chart as a standalone SVG document, to be written as `file_name` beside the markdown report.
struct SvgChart {
  std::string file_name;  // "<stem>_decode.svg", "<stem>_ttft.svg", "<stem>_memory.svg", "<stem>_ssd.svg"
  std::string title;
  std::string svg;
};

// What a report shows besides the samples: the run's quality measurements and, for markdown, the charts
// written beside it (referenced by file name).
struct ReportExtras {
  std::vector<Evaluation> quality;
  std::vector<SvgChart> charts;
  // `lmlab report --runs`: every run whose samples are shown (the report's run is the last), for the header.
  std::vector<RunInfo> merged_runs;
  // `lmlab report --runs ... --supersede`: the cells whose earlier samples a later run replaced, for the header.
  std::vector<SupersededCell> superseded;
  // `lmlab report --reference FILE`: a scenario's reference (harness reference_json()) set beside the decode ratios
  // in place of any the runs recorded; empty = the last run shown that recorded one.
  std::string reference_json;
};

// Environment header, a table of every (config, context), the configuration scoreboard (ranked by speed and
// memory, a star on the best; quality beside it when measured) and one horizontal bar chart of decode tok/s
// per config. `color`: ANSI colors and bold (callers pass true only for a terminal or --color).
std::string render_ansi(const RunInfo& run, const std::vector<Sample>& samples, bool color,
                        const ReportExtras& extras = {});

// Run header (host, model, model size in GiB, commit, date) and environment, the scoreboard, the charts, one
// table per context, then the configurations, notes and errors.
std::string render_markdown(const RunInfo& run, const std::vector<Sample>& samples, const ReportExtras& extras = {});

// Decode tok/s and TTFT against context (a line per config), peak memory and SSD bytes read (bars per
// context and config). Empty when the run has no samples.
std::vector<SvgChart> render_svg_charts(const RunInfo& run, const std::vector<Sample>& samples, const std::string& stem);

// One row per raw sample, with a header; RFC 4180 quoting.
std::string render_csv(const RunInfo& run, const std::vector<Sample>& samples);

// {"run": {...}, "summary": [...], "samples": [...], "quality": [...]}; the engine config and the environment
// are embedded as JSON, not text.
std::string render_json(const RunInfo& run, const std::vector<Sample>& samples,
                        const std::vector<Evaluation>& quality = {});

// The regression suite's checks (`lmlab regression`) as a report section: one line per (model, step) with its
// checks, then every failed check with what was expected and what came. `suite_run` is the run holding them
// (the latest suite run when the report is of another run). Plain text unless `color`.
std::string render_regression_ansi(const RunInfo& suite_run, const std::vector<RegressionCheck>& checks, bool color);
std::string render_regression_markdown(const RunInfo& suite_run, const std::vector<RegressionCheck>& checks);

// An `lmlab compare` run: per context, one row per runtime (name, kind, version) with TTFT, inter-token latency
// p50 / p99, decode tok/s and its ratio to the first runtime's; figures from summarize_streams().
std::string render_compare_ansi(const RunInfo& run, const std::vector<RuntimeInfo>& runtimes,
                                const std::vector<Sample>& samples, bool color);
std::string render_compare_markdown(const RunInfo& run, const std::vector<RuntimeInfo>& runtimes,
                                    const std::vector<Sample>& samples);

// "profiling_results_<host>.md", with characters other than [A-Za-z0-9._-] in host replaced by '_'.
std::string markdown_report_file_name(const std::string& host);

}  // namespace lmlab
