// lmlab report: renderers of one results run (its RunInfo and raw samples) as an ANSI console report, a
// markdown profiling report (profiling_results_<host>.md), CSV and JSON. Renderers format; the statistics
// come from results/ (summarize(), quantile()). Depends on results only.
#pragma once

#include <string>
#include <vector>

#include "lmlab/results.h"

namespace lmlab {

// A table of every (config, context) and one horizontal bar chart of decode tok/s per config.
// `color`: ANSI colors and bold (callers pass true only for a terminal or --color).
std::string render_ansi(const RunInfo& run, const std::vector<Sample>& samples, bool color);

// Run header (host, model, model size in GiB, commit, date), one table per context, then notes and errors.
std::string render_markdown(const RunInfo& run, const std::vector<Sample>& samples);

// One row per raw sample, with a header; RFC 4180 quoting.
std::string render_csv(const RunInfo& run, const std::vector<Sample>& samples);

// {"run": {...}, "summary": [...], "samples": [...]}; the engine config is embedded as JSON, not text.
std::string render_json(const RunInfo& run, const std::vector<Sample>& samples);

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
