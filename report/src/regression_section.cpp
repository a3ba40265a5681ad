// The regression suite's section of the ANSI and markdown reports: one line per (model, step) saying which
// checks passed (answers are long, so a passing answer shows as "answer = reference"), then the failed checks
// in full. A run that stored no checks, or was killed before storing them all, says so.
#include <fmt/format.h>

#include "lmlab/report.h"
#include "units.h"

namespace lmlab {

namespace {

using report_detail::md_cell;

struct StepLine {
  std::string model, step;
  bool pass = true;
  std::string summary;
};

// A check as a few words: counts show their value, the answer only whether it matched.
std::string brief(const RegressionCheck& c) {
  if (c.check == "answer") return c.pass ? "answer = reference" : "answer DIFFERS";
  if (c.check == "status") return c.pass ? "status 200" : "status: " + report_detail::short_error(c.got, 60);
  return fmt::format("{} {}{}", c.check, c.got, c.pass ? "" : fmt::format(" (expected {})", c.expected));
}

std::vector<StepLine> step_lines(const std::vector<RegressionCheck>& checks) {
  std::vector<StepLine> lines;
  for (const RegressionCheck& c : checks) {
    if (lines.empty() || lines.back().model != c.model || lines.back().step != c.step) lines.push_back({c.model, c.step, true, ""});
    StepLine& l = lines.back();
    l.pass = l.pass && c.pass;
    l.summary += (l.summary.empty() ? "" : " · ") + brief(c);
  }
  return lines;
}

int failures(const std::vector<RegressionCheck>& checks) {
  int n = 0;
  for (const auto& c : checks) n += c.pass ? 0 : 1;
  return n;
}

std::string verdict(const RunInfo& run, const std::vector<RegressionCheck>& checks) {
  const int failed = failures(checks);
  if (checks.empty()) return "no checks stored";
  std::string v = failed ? fmt::format("FAILED ({} of {} checks)", failed, checks.size())
                         : fmt::format("passed ({} checks)", checks.size());
  if (run.state == "running") v += ", INCOMPLETE (the run stopped before its end)";
  return v;
}

}  // namespace

std::string render_regression_ansi(const RunInfo& run, const std::vector<RegressionCheck>& checks, bool color) {
  auto paint = [&](const std::string& s, const char* code) { return color ? code + s + "\033[0m" : s; };
  const int failed = failures(checks);
  std::string out = "\n" + paint(fmt::format("Regression suite (run {}, {}, commit {}): {}", run.id, run.started_at,
                                             run.git_commit.empty() ? "unknown" : run.git_commit, verdict(run, checks)),
                                 failed || run.state == "running" ? "\033[1;31m" : "\033[1;32m") +
                    "\n";
  const std::vector<StepLine> lines = step_lines(checks);
  size_t width = 0;
  for (const StepLine& l : lines) width = std::max(width, report_detail::display_width(l.model + " " + l.step));
  for (const StepLine& l : lines)
    out += fmt::format("  {} {:<{}}  {}\n", l.pass ? paint("✓", "\033[32m") : paint("✗", "\033[31m"),
                       l.model + " " + l.step, width, l.summary);
  for (const RegressionCheck& c : checks)
    if (!c.pass)
      out += paint(fmt::format("  FAILED {} step {}: {}\n    expected: {}\n    got:      {}\n", c.model, c.step, c.check,
                               report_detail::short_error(c.expected, 200), report_detail::short_error(c.got, 200)),
                   "\033[31m");
  return out;
}

std::string render_regression_markdown(const RunInfo& run, const std::vector<RegressionCheck>& checks) {
  std::string md = fmt::format("## Regression suite: {}\n\nRun {} ({}, commit {}): prompt cache and sliding windows over "
                               "HTTP, checks stored in the results database.\n\n",
                               verdict(run, checks), run.id, md_cell(run.started_at),
                               run.git_commit.empty() ? "unknown" : md_cell(run.git_commit));
  if (checks.empty()) return md;
  md += "| Model | Step | Result | Checks |\n|---|---|---|---|\n";
  for (const StepLine& l : step_lines(checks))
    md += fmt::format("| {} | {} | {} | {} |\n", md_cell(l.model), md_cell(l.step), l.pass ? "pass" : "**FAIL**", md_cell(l.summary));
  if (failures(checks)) {
    md += "\n### Failed checks\n\n";
    for (const RegressionCheck& c : checks)
      if (!c.pass)
        md += fmt::format("- {} step {}: {}: expected `{}`, got `{}`\n", md_cell(c.model), md_cell(c.step), c.check,
                          md_cell(report_detail::short_error(c.expected, 200)), md_cell(report_detail::short_error(c.got, 200)));
  }
  return md + "\n";
}

}  // namespace lmlab
