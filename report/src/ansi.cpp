// ANSI console report: a header (run, then the machine and build it ran on), a table of every (config,
// context), the configuration scoreboard, decode speed relative to the baseline config, expert streaming against
// the drive (configs that read the SSD while decoding), then one horizontal bar chart of decode tok/s per config
// (bars share one scale so configs compare at a glance). Colors only on request.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "decode_ratios.h"
#include "display_names.h"
#include "environment_lines.h"
#include "lmlab/report.h"
#include "report_rows.h"
#include "scoreboard.h"
#include "streaming_table.h"
#include "units.h"

namespace lmlab {

using namespace report_detail;

namespace {

constexpr int kBarWidth = 40;
constexpr const char* kReset = "\033[0m";
constexpr const char* kBold = "\033[1m";
constexpr const char* kDim = "\033[2m";
constexpr const char* kRed = "\033[31m";
constexpr const char* kYellow = "\033[33m";
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

// Why a (config, context) has no figures: its samples' errors, or none usable without an error (e.g. a
// sample that decoded nothing).
std::string no_figures(const ReportRow& r, size_t max_chars) {
  return r.errors.empty() ? std::string("no usable sample") : "failed: " + short_error(r.errors.front(), max_chars);
}

std::string quality_cells(const ScoreRow& r) {
  if (!r.quality) return "";
  const std::string kl = r.quality->kl_divergence ? fmt::format("{:.5f}", *r.quality->kl_divergence) : std::string("reference");
  return fmt::format("  {:>10.4f}  {:>13}", r.quality->perplexity, kl);
}

std::string render_scoreboard(const Style& style, const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                              const std::vector<Evaluation>& quality) {
  const Scoreboard board = scoreboard(rows, configs, summarize_quality(quality));
  const bool has_quality = !quality.empty();
  std::string out = "\n" + style("configuration scoreboard", kBold);
  out += style(board.common_contexts.empty()
                   ? std::string(" (no context every config measured: speed not ranked)")
                   : fmt::format(" (decode tok/s: geometric mean of the medians at contexts {}; memory: largest peak)",
                                 fmt::join(board.common_contexts, ", ")),
               kDim) + "\n";
  out += style(fmt::format("{:>4}  {:<18}  {:>12}  {:>7}  {:>12}  {:>8}{}", "rank", "config", "decode tok/s", "vs best", "peak memory",
                           "mem rank", has_quality ? fmt::format("  {:>10}  {:>13}", "perplexity", "KL (nats/tok)") : ""),
               kBold) + "\n";
  for (const ScoreRow& r : board.rows) {
    const std::string name = fmt::format("{:<18}", display_name(r.config));
    if (!r.usable) {
      out += fmt::format("{:>4}  {}  {:>12}  {:>7}  {:>12}  {:>8}{}\n", "-", name, style("no usable sample", kRed), "",
                         r.peak_memory_bytes ? human_bytes(static_cast<double>(r.peak_memory_bytes)) : "", "", quality_cells(r));
      continue;
    }
    const std::string star_speed = r.speed_rank == 1 ? style("★", kYellow) : " ";
    const std::string star_mem = r.memory_rank == 1 ? style("★", kYellow) : " ";
    out += fmt::format("{:>3}{}  {}  {:>12.2f}  {:>6.0f}%  {:>12}{}  {:>7}{}\n", r.speed_rank, star_speed,
                       r.speed_rank == 1 ? style(name, kBold) : name, r.decode_tok_s, 100 * r.relative_speed,
                       human_bytes(static_cast<double>(r.peak_memory_bytes)), star_mem, r.memory_rank, quality_cells(r));
  }
  return out;
}

// With a reference: its sentence under the title, and its columns ("SwiftLM 512", as wide as their heading in
// terminal columns: the name is user text, "SwiftLM – M5" or CJK) after lmlab's.
std::string render_decode_ratios(const Style& style, const DecodeRatios& t, size_t name_width) {
  std::string out = "\n" + style("decode relative to " + display_name(t.baseline), kBold);
  out += style(" (median decode tok/s over " + display_name(t.baseline) + "'s at the same context; - where either is missing)",
               kDim) + "\n";
  if (const std::string about = reference_sentence(t); !about.empty()) out += style(about, kDim) + "\n";
  std::string header = fmt::format("{:<{}}", "config", name_width);
  std::vector<size_t> widths(t.contexts.size(), 8);  // lmlab's columns, then the reference's when shown
  for (int64_t ctx : t.contexts) header += fmt::format("  {:>8}", ctx);
  if (t.shows_reference())
    for (int64_t ctx : t.contexts) {
      const std::string heading = fmt::format("{} {}", t.reference->name, ctx);
      widths.push_back(std::max<size_t>(8, display_width(heading)));
      header += fmt::format("  {:>{}}", heading, widths.back());
    }
  out += style(header, kBold) + "\n";
  for (const DecodeRatioRow& r : t.rows) {
    out += fmt::format("{:<{}}", display_name(r.config), name_width);
    size_t column = 0;
    for (const auto* cells : {&r.ratios, &r.published})
      for (const auto& ratio : *cells) {
        const size_t width = widths[column++];
        out += ratio ? fmt::format("  {:>{}.2f}", *ratio, width) : fmt::format("  {:>{}}", "-", width);
      }
    out += "\n";
  }
  return out;
}

// MB = 10^6 bytes, as in the markdown report.
std::string render_streaming(const Style& style, const std::vector<StreamingRow>& rows, size_t name_width) {
  std::string out = "\n" + style("expert streaming against the drive", kBold);
  out += style(" (medians; SSD MB per decode step after the first; read rate = MB/token x decode tok/s; drive: probed "
               "O_DIRECT rate for the same reads; ceiling = drive / MB per token)",
               kDim) + "\n";
  out += style(fmt::format("{:<{}}  {:>7}  {:>10}  {:>9}  {:>10}  {:>7}  {:>13}  {:>12}  {:>9}", "config", name_width, "context",
                           "SSD MB/tok", "read MB/s", "drive MB/s", "% drive", "ceiling tok/s", "decode tok/s", "% ceiling"),
               kBold) + "\n";
  for (const StreamingRow& r : rows) {
    out += fmt::format("{:<{}}  {:>7}  {:>10.2f}  {:>9.0f}", display_name(r.config), name_width, r.context,
                       r.ssd_bytes_per_token / 1e6, r.read_bps / 1e6);
    if (r.drive)
      out += fmt::format("  {:>10.0f}  {:>6.0f}%  {:>13.1f}  {:>12.1f}  {:>8.0f}%\n", r.drive->read_bps / 1e6,
                         100 * r.drive->read_fraction, r.drive->ceiling_tok_s, r.decode_tok_s, 100 * r.drive->ceiling_fraction);
    else
      out += fmt::format("  {:>10}  {:>7}  {:>13}  {:>12.1f}  {:>9}\n", "not probed", "-", "-", r.decode_tok_s, "-");
  }
  return out;
}

}  // namespace

std::string render_ansi(const RunInfo& run, const std::vector<Sample>& samples, bool color, const ReportExtras& extras) {
  const Style style{color};
  std::string out = style(fmt::format("lmlab run {} · scenario {} · model {}, {} · host {}", run.id, run.scenario,
                                      run.model, gib_with_bytes(run.model_bytes), run.host),
                          kBold) +
                    "\n";
  if (extras.merged_runs.size() > 1) {
    out += style("samples of runs " + merged_runs_line(extras.merged_runs), kDim) + "\n";
    for (const std::string& line : superseded_lines(extras.superseded)) out += style(line, kDim) + "\n";
  } else {
    out += style(fmt::format("commit {} · started {}", run.git_commit.empty() ? "unknown" : run.git_commit, run.started_at), kDim) + "\n";
  }
  for (const auto& [label, value] : environment_lines(run)) out += style(fmt::format("{:<15} {}", label, value), kDim) + "\n";
  out += "\n";

  const std::vector<ReportRow> rows = report_rows(samples);
  const std::vector<std::string> configs = configs_in_order(samples);
  size_t name_width = 6;
  for (const auto& c : configs) name_width = std::max(name_width, display_width(display_name(c)));
  auto color_of = [&](const std::string& config) {
    const auto i = static_cast<size_t>(std::find(configs.begin(), configs.end(), config) - configs.begin());
    return kConfigColors[i % std::size(kConfigColors)];
  };

  const bool gpu = any_gpu_memory(rows);  // GPU runs: a GPU memory column after the process's peak memory
  out += style(fmt::format("{:<{}}  {:>7}  {:>28}  {:>9}  {:>9}  {:>11}{}  {:>11}  {:>11}  {:>5}", "config", name_width,
                           "context", "decode tok/s med (p10-p90)", "TTFT ms", "prefill/s", "peak mem",
                           gpu ? fmt::format("  {:>11}", "GPU mem") : "", "KV cache", "SSD read", "n"),
               kBold) +
         "\n";
  for (const ReportRow& r : rows) {
    const Summary& s = r.summary;
    const std::string name = style(fmt::format("{:<{}}", display_name(s.config), name_width), color_of(s.config));
    if (s.n == 0) {
      out += fmt::format("{}  {:>7}  {}\n", name, s.context, style(no_figures(r, 100), kRed));
      continue;
    }
    const std::string rate = fmt::format("{:.1f} ({:.1f}-{:.1f})", s.decode_tok_s_median, s.decode_tok_s_p10, s.decode_tok_s_p90);
    const std::string gpu_cell =
        !gpu ? "" : fmt::format("  {:>11}", r.gpu_memory_bytes_max ? human_bytes(static_cast<double>(*r.gpu_memory_bytes_max)) : "-");
    out += fmt::format("{}  {:>7}  {:>28}  {:>9.1f}  {:>9.0f}  {:>11}{}  {:>11}  {:>11}  {:>5}\n", name, s.context, rate,
                       s.ttft_ms_median, r.prompt_tok_s_median, human_bytes(static_cast<double>(s.peak_memory_bytes_max)),
                       gpu_cell, human_bytes(r.kv_cache_bytes_median), human_bytes(s.ssd_bytes_read_median),
                       s.errors ? fmt::format("{}/{}", s.n, s.n + s.errors) : fmt::format("{}", s.n));
  }

  out += render_scoreboard(style, rows, configs, extras.quality);
  if (const auto ratios = report_decode_ratios(run, extras, rows, samples)) out += render_decode_ratios(style, *ratios, name_width);
  if (const auto streaming = streaming_rows(rows, samples); !streaming.empty())
    out += render_streaming(style, streaming, name_width);

  double max_rate = 0;
  for (const ReportRow& r : rows) max_rate = std::max(max_rate, r.summary.decode_tok_s_median);
  out += "\n" + style("decode tok/s (median; one scale for all configs)", kBold) + "\n";
  for (const std::string& config : configs) {
    out += style(display_name(config), color_of(config)) + "\n";
    for (const ReportRow& r : rows) {
      if (r.summary.config != config) continue;
      if (r.summary.n == 0) {
        out += fmt::format("  {:>7} {}\n", r.summary.context, style(r.errors.empty() ? "no usable sample" : "failed", kRed));
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
