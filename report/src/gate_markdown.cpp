// The gate's verdict as markdown for CI logs: the verdict first (what failed, by how much, with what p), then the
// runs and one row per comparison.
#include <fmt/format.h>

#include <cmath>

#include "lmlab/gate_report.h"
#include "units.h"

namespace lmlab {
namespace {

using report_detail::human_bytes;

std::string value(const GateRow& r, double v) {
  if (r.metric.find("bytes") != std::string::npos) return human_bytes(v);
  if (r.metric == "greedy tokens differing") return fmt::format("{:.1f}%", v * 100);
  if (r.metric == "decode tok/s ratio" || r.metric == "SSD stall / drive time") return fmt::format("{:.3f}", v);
  if (r.metric == "perplexity") return fmt::format("{:.4f}", v);
  return fmt::format("{:.1f}", v);
}

std::string where(const GateRow& r) {
  return r.context > 0 ? fmt::format("{} at context {}", r.config, r.context) : r.config;
}

std::string verdict(const GateRow& r) {
  switch (r.verdict) {
    case GateVerdict::regression: return "**REGRESSION**";
    case GateVerdict::skipped: return "skipped";
    case GateVerdict::ok: return "ok";
  }
  return "?";
}

std::string run_line(const char* side, const RunInfo& r) {
  return fmt::format("- {}: run {} of scenario '{}' on {} ({}), commit {}, {}; host {} [{}]\n", side, r.id, r.scenario,
                     r.model, human_bytes(static_cast<double>(r.model_bytes)), r.git_commit.empty() ? "?" : r.git_commit,
                     r.started_at, r.host, r.host_fingerprint);
}

}  // namespace

std::string render_gate_markdown(const GateReport& rep) {
  std::string out = "## lmlab gate\n\n";
  if (rep.status == GateReport::Status::cannot_compare) {
    out += "**CANNOT COMPARE** (exit 2): the gate did not judge these runs.\n\n";
    for (const std::string& why : rep.cannot_compare) out += "- " + why + "\n";
  } else if (rep.status == GateReport::Status::regression) {
    out += "**REGRESSION** (exit 1):\n\n";
    for (const GateRow& r : rep.rows) {
      if (r.verdict != GateVerdict::regression) continue;
      out += fmt::format("- {} of {}: {} -> {} ({:+.1f}%, threshold {:.3g}%{}){}\n", r.metric, where(r),
                         value(r, r.baseline), value(r, r.candidate), r.change * 100, r.threshold * 100,
                         r.p_value ? fmt::format(", p = {:.4f}", *r.p_value) : std::string(),
                         r.note.empty() ? "" : "; " + r.note);
    }
  } else {
    out += fmt::format("**PASS** (exit 0): {} comparisons, no regression.\n", rep.rows.size());
  }
  out += "\n" + run_line("baseline", rep.baseline) + run_line("candidate", rep.candidate);
  out += fmt::format("- rule: measured metrics regress when worse by more than max(threshold, {} x the baseline's "
                     "relative IQR) and Mann-Whitney p < {}; deterministic metrics when changed beyond the threshold\n",
                     rep.policy.noise_k, rep.policy.alpha);
  for (const std::string& n : rep.notes) out += "- note: " + n + "\n";
  if (rep.rows.empty()) return out;
  out += "\n| metric | config | context | baseline | candidate | change | threshold | p | n | verdict |\n"
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const GateRow& r : rep.rows) {
    out += fmt::format("| {} | {} | {} | {} | {} | {:+.2f}% | {:.3g}% | {} | {}/{} | {}{} |\n", r.metric, r.config,
                       r.context > 0 ? std::to_string(r.context) : "-", value(r, r.baseline), value(r, r.candidate),
                       r.change * 100, r.threshold * 100, r.p_value ? fmt::format("{:.4f}", *r.p_value) : "-",
                       r.n_baseline, r.n_candidate, verdict(r), r.note.empty() ? "" : " (" + r.note + ")");
  }
  return out;
}

}  // namespace lmlab
