// SVG charts of a run, hand-written (no dependency): decode tok/s and TTFT against context as one line per
// config, peak memory and SSD bytes read as bars grouped by context. Contexts are evenly spaced categories
// (512, 4096 and 8192 on a linear axis would crowd the short ones). Every plotted value is also an attribute
// (data-config, data-context, data-value) so tests and other tools can read the chart back; a (config,
// context) with no usable sample is drawn as a marker ("no usable sample"), never as a zero.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "display_names.h"
#include "lmlab/report.h"
#include "report_rows.h"

namespace lmlab {

using namespace report_detail;

namespace {

constexpr double kWidth = 760, kHeight = 380;
constexpr double kLeft = 80, kRight = 190, kTop = 48, kBottom = 56;  // the legend sits in the right margin
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
constexpr const char* kColors[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#17becf"};

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even escaped.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') out += '?';
        else out += c;
    }
  }
  return out;
}

// The smallest 1, 2, 2.5 or 5 x 10^k at or above v (the y axis' top).
double nice_ceiling(double v) {
  if (!(v > 0) || !std::isfinite(v)) return 1.0;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

// Gridline and tooltip numbers: whole numbers without decimals, others to 3 significant digits.
std::string axis_number(double v) {
  if (std::fabs(v - std::round(v)) < 1e-9 * std::max(1.0, std::fabs(v)) || std::fabs(v) >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

struct ChartSpec {
  std::string kind;   // "decode", "ttft", "memory", "ssd": the file name's suffix
  std::string title;
  std::string unit;   // the y axis' label
  bool bars;
  std::function<double(const ReportRow&)> value;
};

struct Layout {
  std::vector<std::string> configs;
  std::vector<int64_t> contexts;
  double y_max;
  double x_center(size_t ctx_index) const { return kLeft + (static_cast<double>(ctx_index) + 0.5) * kPlotW / static_cast<double>(contexts.size()); }
  double y_of(double v) const { return kTop + kPlotH * (1.0 - v / y_max); }
};

std::string frame(const ChartSpec& spec, const RunInfo& run, const Layout& l) {
  std::string s = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="12" data-chart="{}" data-y-max="{}" data-plot-top="{}" data-plot-height="{}">)"
      "\n",
      kWidth, kHeight, kWidth, kHeight, spec.kind, l.y_max, kTop, kPlotH);
  s += fmt::format(R"(<title>{} · run {} · {} on {}</title>)" "\n", esc(spec.title), run.id, esc(run.model), esc(run.host));
  s += R"(<rect x="0" y="0" width="100%" height="100%" fill="white"/>)" "\n";
  s += fmt::format(R"(<text x="{}" y="24" font-size="15" font-weight="bold">{}</text>)" "\n", kLeft, esc(spec.title));
  for (int i = 0; i <= 5; ++i) {  // gridlines and y labels
    const double v = l.y_max * i / 5, y = l.y_of(v);
    s += fmt::format(R"(<line x1="{}" y1="{:.2f}" x2="{}" y2="{:.2f}" stroke="#ddd"/>)" "\n", kLeft, y, kLeft + kPlotW, y);
    s += fmt::format(R"(<text x="{}" y="{:.2f}" text-anchor="end">{}</text>)" "\n", kLeft - 6, y + 4, axis_number(v));
  }
  s += fmt::format(R"svg(<text transform="translate(18 {:.1f}) rotate(-90)" text-anchor="middle">{}</text>)svg" "\n", kTop + kPlotH / 2,
                   esc(spec.unit));
  for (size_t i = 0; i < l.contexts.size(); ++i)
    s += fmt::format(R"(<text x="{:.2f}" y="{:.2f}" text-anchor="middle">{}</text>)" "\n", l.x_center(i), kTop + kPlotH + 18, l.contexts[i]);
  s += fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="middle">context (tokens)</text>)" "\n", kLeft + kPlotW / 2, kHeight - 10);
  s += fmt::format(R"(<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#333"/><line x1="{0}" y1="{2}" x2="{3}" y2="{2}" stroke="#333"/>)" "\n",
                   kLeft, kTop, kTop + kPlotH, kLeft + kPlotW);
  for (size_t c = 0; c < l.configs.size(); ++c) {  // legend
    const double y = kTop + 8 + 20 * static_cast<double>(c);
    s += fmt::format(R"(<rect class="legend" x="{}" y="{:.1f}" width="14" height="10" fill="{}"/><text x="{}" y="{:.1f}">{}</text>)" "\n",
                     kLeft + kPlotW + 16, y - 9, kColors[c % std::size(kColors)], kLeft + kPlotW + 36, y,
                     esc(display_name(l.configs[c])));
  }
  return s;
}

std::string missing_marker(const std::string& config, int64_t context, double x) {
  return fmt::format(R"(<text class="missing" data-config="{}" data-context="{}" x="{:.2f}" y="{:.2f}" text-anchor="middle" fill="#c00">✕<title>{} at {}: no usable sample</title></text>)" "\n",
                     esc(config), context, x, kTop + kPlotH - 4, esc(display_name(config)), context);
}

std::string chart(const ChartSpec& spec, const RunInfo& run, const std::vector<ReportRow>& rows, Layout l) {
  auto find = [&](const std::string& config, int64_t context) -> const ReportRow* {
    for (const ReportRow& r : rows)
      if (r.summary.config == config && r.summary.context == context && r.summary.n > 0) return &r;
    return nullptr;
  };
  double max_value = 0;
  for (const ReportRow& r : rows)
    if (r.summary.n > 0) max_value = std::max(max_value, spec.value(r));
  l.y_max = nice_ceiling(max_value);
  std::string s = frame(spec, run, l);
  const double group_w = kPlotW / static_cast<double>(l.contexts.size());
  const double bar_w = group_w * 0.8 / static_cast<double>(l.configs.size());
  for (size_t c = 0; c < l.configs.size(); ++c) {
    const std::string& config = l.configs[c];
    const char* color = kColors[c % std::size(kColors)];
    std::string line;  // polyline points of the current unbroken run of usable contexts
    auto flush_line = [&] {
      if (std::count(line.begin(), line.end(), ',') >= 2)
        s += fmt::format(R"(<polyline class="series" data-config="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>)" "\n", esc(config), color, line);
      line.clear();
    };
    for (size_t i = 0; i < l.contexts.size(); ++i) {
      const int64_t context = l.contexts[i];
      const ReportRow* r = find(config, context);
      const double x = spec.bars ? kLeft + group_w * static_cast<double>(i) + group_w * 0.1 + bar_w * (static_cast<double>(c) + 0.5) : l.x_center(i);
      if (!r) {
        flush_line();
        s += missing_marker(config, context, x);
        continue;
      }
      const double v = spec.value(*r), y = l.y_of(v);
      const std::string tip = fmt::format("<title>{} at {}: {} {}</title>", esc(display_name(config)), context, axis_number(v), esc(spec.unit));
      if (spec.bars) {
        s += fmt::format(R"(<rect class="bar" data-config="{}" data-context="{}" data-value="{}" x="{:.3f}" y="{:.3f}" width="{:.3f}" height="{:.3f}" fill="{}">{}</rect>)" "\n",
                         esc(config), context, v, x - bar_w / 2, y, bar_w, kTop + kPlotH - y, color, tip);
      } else {
        line += fmt::format("{}{:.3f},{:.3f}", line.empty() ? "" : " ", x, y);
        s += fmt::format(R"(<circle class="point" data-config="{}" data-context="{}" data-value="{}" cx="{:.3f}" cy="{:.3f}" r="4" fill="{}">{}</circle>)" "\n",
                         esc(config), context, v, x, y, color, tip);
      }
    }
    flush_line();
  }
  return s + "</svg>\n";
}

}  // namespace

std::vector<SvgChart> render_svg_charts(const RunInfo& run, const std::vector<Sample>& samples, const std::string& stem) {
  const std::vector<ReportRow> rows = report_rows(samples);
  Layout l{configs_in_order(samples), contexts_in_order(samples), 1.0};
  if (l.configs.empty()) return {};
  const double mib = 1024.0 * 1024.0;
  const std::vector<ChartSpec> specs = {
      {"decode", "Decode speed by context (median)", "decode tok/s", false, [](const ReportRow& r) { return r.summary.decode_tok_s_median; }},
      {"ttft", "Time to first token by context (median)", "TTFT ms", false, [](const ReportRow& r) { return r.summary.ttft_ms_median; }},
      {"memory", "Peak memory by context (largest sample)", "peak memory MiB", true,
       [mib](const ReportRow& r) { return static_cast<double>(r.summary.peak_memory_bytes_max) / mib; }},
      {"ssd", "SSD bytes read per sample (median)", "SSD read MiB", true, [mib](const ReportRow& r) { return r.summary.ssd_bytes_read_median / mib; }},
  };
  std::vector<SvgChart> out;
  for (const ChartSpec& spec : specs) out.push_back({stem + "_" + spec.kind + ".svg", spec.title, chart(spec, run, rows, l)});
  return out;
}

}  // namespace lmlab
