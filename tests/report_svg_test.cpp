// SVG charts, the scoreboard and the "no usable sample" rendering, on samples whose figures are known: every
// chart parses as XML (libxml2), holds one point or bar per usable (config, context) whose data-value equals
// the summary and whose geometry matches that value on the chart's axis, and a marker for each one without.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "lmlab/report.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

Sample sample(const std::string& config, int64_t context, int rep, double tok_s, int64_t peak, int64_t ssd) {
  Sample s;
  s.config = config;
  s.context_tokens = context;
  s.repetition = rep;
  s.prompt_tokens = context;
  s.prompt_ns = 50'000'000;
  s.decode_tokens = 16;
  s.decode_ns = static_cast<int64_t>(std::llround(16.0 / tok_s * 1e9));
  s.ttft_ns = 60'000'000 + context * 1000;
  s.peak_memory_bytes = peak;
  s.kv_cache_bytes = context * 1024;
  s.ssd_bytes_read = ssd;
  return s;
}

// vanilla and turbo at 512 and 4096; ssd at 512 only: at 4096 it has one failed sample and one that decoded
// nothing (no error: "no usable sample" must still render, not crash).
std::vector<Sample> known_samples() {
  std::vector<Sample> out;
  for (int rep = 0; rep < 2; ++rep) {
    out.push_back(sample("vanilla", 512, rep, 40.0 + rep, 300 << 20, 0));
    out.push_back(sample("vanilla", 4096, rep, 30.0 + rep, 340 << 20, 0));
    out.push_back(sample("ssd", 512, rep, 20.0 + rep, 120 << 20, (64 << 20) + rep));
    out.push_back(sample("turbo", 512, rep, 45.0 + rep, 290 << 20, 0));
    out.push_back(sample("turbo", 4096, rep, 36.0 + rep, 295 << 20, 0));
  }
  Sample failed = sample("ssd", 4096, 0, 1.0, 0, 0);
  failed.error = "out of memory at layer 3";
  out.push_back(failed);
  Sample empty = sample("ssd", 4096, 1, 1.0, 0, 0);
  empty.decode_tokens = 0;
  empty.decode_ns = 0;
  out.push_back(empty);
  return out;
}

RunInfo known_run() {
  RunInfo run;
  run.id = 3;
  run.host = "host <&> 1";
  run.model = "m";
  run.model_bytes = 1000;
  return run;
}

struct XmlDoc {
  std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)> doc{nullptr, xmlFreeDoc};
  explicit XmlDoc(const std::string& text)
      : doc(xmlReadMemory(text.data(), static_cast<int>(text.size()), "chart.svg", nullptr, XML_PARSE_NONET), xmlFreeDoc) {}

  // Every element matching the XPath (the SVG namespace bound to "s"), as attribute maps.
  std::vector<std::map<std::string, std::string>> select(const std::string& xpath) const {
    std::vector<std::map<std::string, std::string>> out;
    std::unique_ptr<xmlXPathContext, void (*)(xmlXPathContextPtr)> ctx(xmlXPathNewContext(doc.get()), xmlXPathFreeContext);
    xmlXPathRegisterNs(ctx.get(), BAD_CAST "s", BAD_CAST "http://www.w3.org/2000/svg");
    std::unique_ptr<xmlXPathObject, void (*)(xmlXPathObjectPtr)> res(xmlXPathEvalExpression(BAD_CAST xpath.c_str(), ctx.get()),
                                                                     xmlXPathFreeObject);
    if (!res || !res->nodesetval) return out;
    for (int i = 0; i < res->nodesetval->nodeNr; ++i) {
      std::map<std::string, std::string> attrs;
      for (xmlAttrPtr a = res->nodesetval->nodeTab[i]->properties; a; a = a->next) {
        xmlChar* v = xmlNodeGetContent(reinterpret_cast<xmlNodePtr>(a));
        attrs[reinterpret_cast<const char*>(a->name)] = reinterpret_cast<const char*>(v);
        xmlFree(v);
      }
      out.push_back(std::move(attrs));
    }
    return out;
  }
};

double num(const std::map<std::string, std::string>& attrs, const std::string& key) { return std::stod(attrs.at(key)); }

TEST(SvgCharts, ParseAsXmlAndEveryPointAndBarMatchesTheSummary) {
  const std::vector<Sample> samples = known_samples();
  const auto charts = render_svg_charts(known_run(), samples, "profiling_results_x");
  ASSERT_EQ(charts.size(), 4u);
  std::map<std::pair<std::string, int64_t>, Summary> by_key;
  for (const Summary& s : summarize(samples)) by_key[{s.config, s.context}] = s;
  const std::map<std::string, std::function<double(const Summary&)>> value_of = {
      {"decode", [](const Summary& s) { return s.decode_tok_s_median; }},
      {"ttft", [](const Summary& s) { return s.ttft_ms_median; }},
      {"memory", [](const Summary& s) { return static_cast<double>(s.peak_memory_bytes_max) / 1048576.0; }},
      {"ssd", [](const Summary& s) { return s.ssd_bytes_read_median / 1048576.0; }},
  };
  for (const SvgChart& chart : charts) {
    const XmlDoc doc(chart.svg);
    ASSERT_TRUE(doc.doc) << chart.file_name << " is not well-formed XML:\n" << chart.svg;
    const auto root = doc.select("/s:svg");
    ASSERT_EQ(root.size(), 1u);
    const std::string kind = root[0].at("data-chart");
    EXPECT_EQ(chart.file_name, "profiling_results_x_" + kind + ".svg");
    const double y_max = num(root[0], "data-y-max"), top = num(root[0], "data-plot-top"), height = num(root[0], "data-plot-height");
    const bool bars = kind == "memory" || kind == "ssd";
    const auto marks = doc.select(bars ? "//s:rect[@class='bar']" : "//s:circle[@class='point']");
    EXPECT_EQ(marks.size(), 5u) << kind;  // the usable (config, context) pairs
    double largest = 0;
    for (const auto& m : marks) {
      const Summary& s = by_key.at({m.at("data-config"), std::stoll(m.at("data-context"))});
      const double want = value_of.at(kind)(s);
      largest = std::max(largest, want);
      EXPECT_NEAR(num(m, "data-value"), want, 1e-9 * std::max(1.0, want)) << kind << " " << s.config << " " << s.context;
      // Geometry: the bar's height (or the point's distance from the axis) is the value's share of the axis.
      const double drawn = bars ? num(m, "height") : top + height - num(m, "cy");
      EXPECT_NEAR(drawn, height * want / y_max, 0.01) << kind << " " << s.config;
    }
    EXPECT_GE(y_max, largest);
    EXPECT_LT(y_max, 2.5 * largest) << "the axis is a nice ceiling of the largest value, not far above it";
    const auto missing = doc.select("//s:text[@class='missing']");
    ASSERT_EQ(missing.size(), 1u) << kind;
    EXPECT_EQ(missing[0].at("data-config"), "ssd");
    EXPECT_EQ(missing[0].at("data-context"), "4096");
    if (!bars) {
      EXPECT_EQ(doc.select("//s:polyline[@class='series']").size(), 2u) << "ssd has one point: no line";
    }
    EXPECT_NE(chart.svg.find("host &lt;&amp;&gt; 1"), std::string::npos) << "text is escaped";
  }
  EXPECT_TRUE(render_svg_charts(known_run(), {}, "x").empty());
}

TEST(Scoreboard, RanksBySpeedOverCommonContextsStarsTheBestAndShowsQuality) {
  const std::vector<Sample> samples = known_samples();
  const std::vector<Evaluation> quality = {{"vanilla", 100, 150.0, std::nullopt, 0, std::nullopt, "vanilla"},
                                           {"turbo", 100, 151.0, std::nullopt, 0, 0.25, "vanilla"}};
  const std::string ansi = render_ansi(known_run(), samples, false, {quality, {}});
  // Common context: 512 only (ssd has nothing usable at 4096). turbo 45.5 > vanilla 40.5 > ssd 20.5 tok/s.
  EXPECT_NE(ansi.find("decode tok/s: geometric mean of the medians at contexts 512;"), std::string::npos) << ansi;
  const size_t board = ansi.find("configuration scoreboard");
  ASSERT_NE(board, std::string::npos);
  const size_t turbo = ansi.find("TurboQuant", board), vanilla = ansi.find("Vanilla", board), ssd = ansi.find("SSD Stream", board);
  EXPECT_LT(turbo, vanilla);
  EXPECT_LT(vanilla, ssd);
  EXPECT_NE(ansi.find("  1★  TurboQuant", board), std::string::npos) << ansi;
  EXPECT_NE(ansi.find("120.00 MiB★"), std::string::npos) << "ssd has the smallest peak: the memory star";
  EXPECT_NE(ansi.find("reference"), std::string::npos);
  EXPECT_NE(ansi.find(fmt::format("{:.4f}", std::exp(1.51))), std::string::npos) << "turbo's perplexity";
  EXPECT_NE(ansi.find("0.00250"), std::string::npos) << "turbo's KL = 0.25 / 100 tokens";
  const std::string md = render_markdown(known_run(), samples, {quality, {}});
  EXPECT_NE(md.find("| 1 ★ | TurboQuant | 45.50 | 100% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 3 | SSD Stream | 20.50 | 45% | 120.00 MiB ★ | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 4.4817 | reference |"), std::string::npos) << "vanilla: exp(150/100)";
}

TEST(Reports, AConfigContextWithNoUsableSampleRendersAsSuch) {
  std::vector<Sample> samples = known_samples();
  // Only the sample that decoded nothing, without an error, at ssd/4096: what used to crash `report`.
  std::erase_if(samples, [](const Sample& s) { return s.error.has_value(); });
  const std::string ansi = render_ansi(known_run(), samples, false);
  EXPECT_NE(ansi.find("SSD Stream     4096  no usable sample"), std::string::npos) << ansi;
  const std::string md = render_markdown(known_run(), samples);
  EXPECT_NE(md.find("| SSD Stream | no usable sample |"), std::string::npos) << md;
  EXPECT_NO_THROW(render_json(known_run(), samples));
  EXPECT_NO_THROW(render_csv(known_run(), samples));
}

}  // namespace
}  // namespace lmlab
