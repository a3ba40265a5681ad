// Markdown profiling report (profiling_results_<host>.md): run header, one table per context, the configs'
// engine options, notes and errors. Model size is always the run's recorded model_bytes (never N/A).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "engine_configs.h"
#include "lmlab/report.h"
#include "report_rows.h"
#include "units.h"

namespace lmlab {

using namespace report_detail;

namespace {

// Table cells may not contain '|' or newlines.
std::string cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

std::string samples_cell(const Summary& s) {
  return s.errors == 0 ? fmt::format("{}", s.n) : fmt::format("{} ({} failed)", s.n, s.errors);
}

}  // namespace

std::string markdown_report_file_name(const std::string& host) {
  std::string safe = host.empty() ? "unknown-host" : host;
  for (char& c : safe)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  return "profiling_results_" + safe + ".md";
}

std::string render_markdown(const RunInfo& run, const std::vector<Sample>& samples) {
  std::string md = fmt::format("# lmlab profiling results: {}\n\n", cell(run.host));
  md += "| | |\n|---|---|\n";
  md += fmt::format("| Host | {} |\n", cell(run.host));
  md += fmt::format("| Scenario | {} |\n", cell(run.scenario));
  md += fmt::format("| Model | {} |\n", cell(run.model));
  md += fmt::format("| Model size | {} |\n", gib_with_bytes(run.model_bytes));
  md += fmt::format("| Commit | {} |\n", run.git_commit.empty() ? "not a git checkout" : cell(run.git_commit));
  md += fmt::format("| Date | {} |\n", cell(run.started_at));
  md += fmt::format("| Run | {} |\n", run.id);
  if (const std::string prompt = describe_prompt(run); !prompt.empty()) md += fmt::format("| Prompt | {} |\n", cell(prompt));
  md += "\n";

  const std::vector<ReportRow> rows = report_rows(samples);
  for (int64_t context : contexts_in_order(samples)) {
    md += fmt::format("## Context {} tokens\n\n", context);
    md += "| Config | Decode tok/s median (p10–p90) | TTFT ms | Prefill tok/s | Peak memory | KV cache | SSD read | Samples |\n";
    md += "|---|---|---|---|---|---|---|---|\n";
    for (const ReportRow& r : rows) {
      if (r.summary.context != context) continue;
      const Summary& s = r.summary;
      if (s.n == 0) {
        md += fmt::format("| {} | failed: {} | | | | | | {} |\n", cell(s.config), cell(short_error(r.errors.front(), 120)),
                          samples_cell(s));
        continue;
      }
      md += fmt::format("| {} | {:.1f} ({:.1f}–{:.1f}) | {:.1f} | {:.0f} | {} | {} | {} | {} |\n", cell(s.config),
                        s.decode_tok_s_median, s.decode_tok_s_p10, s.decode_tok_s_p90, s.ttft_ms_median,
                        r.prompt_tok_s_median, human_bytes(static_cast<double>(s.peak_memory_bytes_max)),
                        human_bytes(r.kv_cache_bytes_median), human_bytes(s.ssd_bytes_read_median), samples_cell(s));
    }
    md += "\n";
  }

  if (const auto configs = describe_configs(run); !configs.empty()) {
    md += "## Configurations\n\n| Config | Engine options |\n|---|---|\n";
    for (const auto& c : configs) md += fmt::format("| {} | {} |\n", cell(c.name), cell(c.summary));
    md += "\n";
  }

  md += "## Notes\n\n";
  md += "- Decode tok/s: decode tokens / decode time per sample; median and p10–p90 over the repetitions "
        "(linear interpolation). TTFT, prefill tok/s, KV cache and SSD read: medians. Peak memory: the largest "
        "sample's peak.\n";
  if (!run.notes.empty()) md += "- " + cell(run.notes) + "\n";
  bool any_error = false;
  for (const ReportRow& r : rows) {
    for (const std::string& e : r.errors) {
      if (!any_error) md += "\n### Errors\n\n";
      any_error = true;
      md += fmt::format("- {} at context {}: {}\n", cell(r.summary.config), r.summary.context, cell(e));
    }
  }
  return md;
}

}  // namespace lmlab
