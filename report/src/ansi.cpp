// ANSI console report: a header line, a table of every (config, context), then one horizontal bar chart of
// decode tok/s per config (bars share one scale so configs compare at a glance). Colors only on request.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "lmlab/report.h"
#include "report_rows.h"
#include "units.h"

namespace lmlab {

using namespace report_detail;

namespace {

constexpr int kBarWidth = 40;
constexpr const char* kReset = "\033[0m";
constexpr const char* kBold = "\033[1m";
constexpr const char* kDim = "\033[2m";
constexpr const char* kRed = "\033[31m";
constexpr const char* kConfigColors[] = {"\033[36m", "\033[32m", "\033[33m", "\033[35m", "\033[34m", "\033[96m"};

struct Style {
  bool color;
  std::string operator()(const std::string& text, const char* code) const {
    return color ? code + text + kReset : text;
  }
};

// A bar of `fraction` x kBarWidth cells, in eighths of a cell (Unicode block elements).
std::string bar(double fraction) {
  static const char* kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  const int eighths = static_cast<int>(std::lround(std::clamp(fraction, 0.0, 1.0) * kBarWidth * 8));
  std::string s;
  for (int i = 0; i < eighths / 8; ++i) s += "█";
  s += kEighths[eighths % 8];
  if (s.empty()) s = "▏";  // a measured but tiny value still shows
  return s;
}

}  // namespace

std::string render_ansi(const RunInfo& run, const std::vector<Sample>& samples, bool color) {
  const Style style{color};
  std::string out = style(fmt::format("lmlab run {} · scenario {} · model {}, {} · host {}", run.id, run.scenario,
                                      run.model, gib_with_bytes(run.model_bytes), run.host),
                          kBold) +
                    "\n";
  out += style(fmt::format("commit {} · started {}", run.git_commit.empty() ? "unknown" : run.git_commit, run.started_at), kDim) + "\n\n";

  const std::vector<ReportRow> rows = report_rows(samples);
  const std::vector<std::string> configs = configs_in_order(samples);
  size_t name_width = 6;
  for (const auto& c : configs) name_width = std::max(name_width, c.size());
  auto color_of = [&](const std::string& config) {
    const auto i = static_cast<size_t>(std::find(configs.begin(), configs.end(), config) - configs.begin());
    return kConfigColors[i % std::size(kConfigColors)];
  };

  out += style(fmt::format("{:<{}}  {:>7}  {:>28}  {:>9}  {:>9}  {:>11}  {:>11}  {:>11}  {:>5}", "config", name_width,
                           "context", "decode tok/s med (p10-p90)", "TTFT ms", "prefill/s", "peak mem", "KV cache",
                           "SSD read", "n"),
               kBold) +
         "\n";
  for (const ReportRow& r : rows) {
    const Summary& s = r.summary;
    const std::string name = style(fmt::format("{:<{}}", s.config, name_width), color_of(s.config));
    if (s.n == 0) {
      out += fmt::format("{}  {:>7}  {}\n", name, s.context,
                         style("failed: " + short_error(r.errors.front(), 100), kRed));
      continue;
    }
    const std::string rate = fmt::format("{:.1f} ({:.1f}-{:.1f})", s.decode_tok_s_median, s.decode_tok_s_p10, s.decode_tok_s_p90);
    out += fmt::format("{}  {:>7}  {:>28}  {:>9.1f}  {:>9.0f}  {:>11}  {:>11}  {:>11}  {:>5}\n", name, s.context, rate,
                       s.ttft_ms_median, r.prompt_tok_s_median, human_bytes(static_cast<double>(s.peak_memory_bytes_max)),
                       human_bytes(r.kv_cache_bytes_median), human_bytes(s.ssd_bytes_read_median),
                       s.errors ? fmt::format("{}/{}", s.n, s.n + s.errors) : fmt::format("{}", s.n));
  }

  double max_rate = 0;
  for (const ReportRow& r : rows) max_rate = std::max(max_rate, r.summary.decode_tok_s_median);
  out += "\n" + style("decode tok/s (median; one scale for all configs)", kBold) + "\n";
  for (const std::string& config : configs) {
    out += style(config, color_of(config)) + "\n";
    for (const ReportRow& r : rows) {
      if (r.summary.config != config) continue;
      if (r.summary.n == 0) {
        out += fmt::format("  {:>7} {}\n", r.summary.context, style("failed", kRed));
        continue;
      }
      out += fmt::format("  {:>7} {} {:.1f}\n", r.summary.context,
                         style(bar(max_rate > 0 ? r.summary.decode_tok_s_median / max_rate : 0), color_of(config)),
                         r.summary.decode_tok_s_median);
    }
  }
  return out;
}

}  // namespace lmlab
