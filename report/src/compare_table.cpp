// The runtime comparison table of an `lmlab compare` run, in ANSI and markdown: per context, one row per
// runtime in the order they ran; "failed" with the first error where a runtime has no usable sample.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "lmlab/report.h"
#include "units.h"

namespace lmlab {

namespace {

using report_detail::md_cell;

struct Row {
  std::string runtime, kind, version;
  StreamSummary s;
  std::string error;  // set when no sample of the group succeeded
  double ratio = NAN;  // decode tok/s / the first runtime's at this context
};

std::vector<std::pair<int64_t, std::vector<Row>>> rows_by_context(const std::vector<RuntimeInfo>& runtimes,
                                                                  const std::vector<Sample>& samples) {
  std::vector<std::pair<int64_t, std::vector<Row>>> out;
  for (const StreamSummary& s : summarize_streams(samples)) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == s.context; });
    if (it == out.end()) it = out.insert(out.end(), {s.context, {}});
    Row r{s.config, "?", "?", s, "", NAN};
    for (const RuntimeInfo& rt : runtimes)
      if (rt.name == s.config) r.kind = rt.kind, r.version = rt.version;
    if (s.n == 0)
      for (const Sample& x : samples)
        if (x.config == s.config && x.context_tokens == s.context && x.error) {
          r.error = *x.error;
          break;
        }
    it->second.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [ctx, rows] : out)
    for (Row& r : rows)
      if (!rows.empty() && rows.front().s.n > 0 && r.s.n > 0) r.ratio = r.s.decode_tok_s_median / rows.front().s.decode_tok_s_median;
  return out;
}

std::string num(double v, const char* f = "{:.1f}") { return std::isnan(v) ? "-" : fmt::format(fmt::runtime(f), v); }

}  // namespace

std::string render_compare_ansi(const RunInfo& run, const std::vector<RuntimeInfo>& runtimes,
                                const std::vector<Sample>& samples, bool color) {
  auto bold = [&](const std::string& s) { return color ? "\033[1m" + s + "\033[0m" : s; };
  std::string out = bold(fmt::format("lmlab compare run {} · {} · model {} · host {}", run.id, run.scenario, run.model, run.host)) + "\n";
  for (const RuntimeInfo& r : runtimes) out += fmt::format("  {:<12} {:<10} {}  ({})\n", r.name, r.kind, r.version, r.target);
  for (const auto& [ctx, rows] : rows_by_context(runtimes, samples)) {
    out += "\n" + bold(fmt::format("context {} tokens", ctx)) + "\n";
    out += fmt::format("  {:<12} {:>10} {:>12} {:>12} {:>13} {:>8} {:>5}\n", "runtime", "TTFT ms", "ITL p50 ms",
                       "ITL p99 ms", "decode tok/s", "vs 1st", "n");
    for (const Row& r : rows) {
      if (r.s.n == 0) {
        out += fmt::format("  {:<12} failed: {}\n", r.runtime, report_detail::short_error(r.error, 100));
        continue;
      }
      out += fmt::format("  {:<12} {:>10} {:>12} {:>12} {:>13} {:>8} {:>5}\n", r.runtime, num(r.s.ttft_ms_median),
                         num(r.s.itl_ms_p50, "{:.2f}"), num(r.s.itl_ms_p99, "{:.2f}"), num(r.s.decode_tok_s_median),
                         std::isnan(r.ratio) ? "-" : fmt::format("{:.2f}x", r.ratio),
                         r.s.errors ? fmt::format("{}/{}", r.s.n, r.s.n + r.s.errors) : fmt::format("{}", r.s.n));
    }
  }
  return out;
}

std::string render_compare_markdown(const RunInfo& run, const std::vector<RuntimeInfo>& runtimes,
                                    const std::vector<Sample>& samples) {
  std::string md = fmt::format("## Runtime comparison (run {}, {}, model {}, host {}, commit {})\n\n", run.id,
                               md_cell(run.started_at), md_cell(run.model), md_cell(run.host),
                               run.git_commit.empty() ? "unknown" : md_cell(run.git_commit));
  md += "| Runtime | Kind | Version |\n|---|---|---|\n";
  for (const RuntimeInfo& r : runtimes) md += fmt::format("| {} | {} | {} |\n", md_cell(r.name), r.kind, md_cell(r.version));
  for (const auto& [ctx, rows] : rows_by_context(runtimes, samples)) {
    md += fmt::format("\n### Context {} tokens\n\n", ctx);
    md += "| Runtime | TTFT ms | ITL p50 ms | ITL p99 ms | Decode tok/s | vs first | Samples |\n|---|---|---|---|---|---|---|\n";
    for (const Row& r : rows) {
      if (r.s.n == 0) {
        md += fmt::format("| {} | failed: {} | | | | | {} |\n", md_cell(r.runtime), md_cell(report_detail::short_error(r.error, 120)), r.s.errors);
        continue;
      }
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", md_cell(r.runtime), num(r.s.ttft_ms_median),
                        num(r.s.itl_ms_p50, "{:.2f}"), num(r.s.itl_ms_p99, "{:.2f}"), num(r.s.decode_tok_s_median),
                        std::isnan(r.ratio) ? "-" : fmt::format("{:.2f}x", r.ratio), r.s.n);
    }
  }
  return md + "\n";
}

}  // namespace lmlab
