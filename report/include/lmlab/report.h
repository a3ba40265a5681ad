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

// "profiling_results_<host>.md", with characters other than [A-Za-z0-9._-] in host replaced by '_'.
std::string markdown_report_file_name(const std::string& host);

}  // namespace lmlab
