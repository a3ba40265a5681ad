// Reports and the gate, on real data: ci-smoke run in process on coder-moe (plus an over-context context so the
// run holds failed samples) into a temporary database, rendered as markdown, ANSI, CSV and JSON; and
// `lmlab gate` exit codes (0 pass, 1 regression, 2 cannot compare) on a synthetic baseline/candidate pair. On
// synthetic runs: the configurations section, the decode ratios (with a published reference beside them, from the
// runs or `lmlab report --reference`) and expert streaming.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <tuple>
#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "fixtures.h"
#include "lmlab/harness.h"
#include "lmlab/kv_storage.h"
#include "lmlab/report.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kConfigs = {"vanilla", "ssd", "turbo", "ssd+turbo"};
const std::vector<std::string> kDisplayNames = {"Vanilla", "SSD Stream", "TurboQuant", "SSD + TurboQuant"};

fs::path temp_dir(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("lmlab_report_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + what.size())) ++n;
  return n;
}

// One real run shared by the rendering tests of this process (ctest runs each test in its own process, so the
// run is kept small: ~1 s).
class ReportOfRealRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(temp_dir("real"));
    Scenario s = load_scenario(fs::path(LMLAB_SOURCE_DIR) / "scenarios" / "ci-smoke.json");
    ScenarioOverrides o;
    o.model = test::model_dir("coder-moe");
    o.contexts = std::vector<int64_t>{64, 320, 4096};
    o.ctx_size = 1024;  // 4096 fails: the report must show it
    o.decode_tokens = 4;
    apply_overrides(s, o);
    ResultsStore store = ResultsStore::open((*dir_ / "lab.db").string());
    RunSettings settings;
    settings.host = "bench host/1";
    settings.git_commit = "0123abcd";
    const RunOutcome out = run_scenario(s, store, settings);
    run_ = new RunInfo(*store.run(out.run_id));
    samples_ = new std::vector<Sample>(store.samples(out.run_id));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete run_;
    delete samples_;
  }
  static fs::path* dir_;
  static RunInfo* run_;
  static std::vector<Sample>* samples_;
};
fs::path* ReportOfRealRun::dir_ = nullptr;
RunInfo* ReportOfRealRun::run_ = nullptr;
std::vector<Sample>* ReportOfRealRun::samples_ = nullptr;

TEST_F(ReportOfRealRun, MarkdownHasHeaderModelSizeEveryConfigAndContextAndTheErrors) {
  const std::string md = render_markdown(*run_, *samples_);
  EXPECT_NE(md.find("| Host | bench host/1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| Model | coder-moe |"), std::string::npos);
  EXPECT_NE(md.find("| Model size | 0.0306 GiB (32,865,168 bytes) |"), std::string::npos) << md;
  EXPECT_EQ(md.find("N/A"), std::string::npos);
  EXPECT_NE(md.find("| Commit (of the binary) | 0123abcd |"), std::string::npos);
  for (const char* label : {"| CPU | ", "| RAM | ", "| GPU | ", "| OS | ", "| Build | ", "| Engine options | "})
    EXPECT_NE(md.find(label), std::string::npos) << label;
  EXPECT_NE(md.find(", " + probe_environment().cpu_isa + " kernels |"), std::string::npos) << "the CPU kernels' ISA";
  EXPECT_NE(md.find("## Scoreboard"), std::string::npos);
  EXPECT_NE(md.find("| Date | " + run_->started_at + " |"), std::string::npos);
  EXPECT_NE(md.find("| Prompt | random ids (seed 7) |"), std::string::npos);
  for (int64_t ctx : {64, 320, 4096}) EXPECT_NE(md.find("## Context " + std::to_string(ctx) + " tokens"), std::string::npos);
  for (const std::string& c : kDisplayNames) {
    // One row per context in the tables, one in the scoreboard, one line in the configurations section.
    EXPECT_GE(count(md, "| " + c + " |"), 5u) << c;
  }
  EXPECT_NE(md.find("| TurboQuant | KV turbo (K5 V4, every token compressed)"), std::string::npos) << md;
  EXPECT_NE(md.find("### Errors"), std::string::npos);
  EXPECT_EQ(count(md, " at context 4096: "), 4u);  // one distinct message per config
  EXPECT_NE(md.find("failed: "), std::string::npos);
  EXPECT_EQ(markdown_report_file_name(run_->host), "profiling_results_bench_host_1.md");
}

TEST_F(ReportOfRealRun, AnsiHasTableAndBarsAndColorsOnlyWhenAsked) {
  const std::string plain = render_ansi(*run_, *samples_, false);
  const std::string colored = render_ansi(*run_, *samples_, true);
  EXPECT_EQ(plain.find('\033'), std::string::npos);
  EXPECT_NE(colored.find("\033["), std::string::npos);
  EXPECT_NE(plain.find("0.0306 GiB"), std::string::npos) << plain;
  EXPECT_NE(plain.find("decode tok/s"), std::string::npos);
  for (const std::string& c : kDisplayNames) EXPECT_NE(plain.find("\n" + c + "\n"), std::string::npos) << c;  // chart titles
  EXPECT_NE(plain.find("configuration scoreboard"), std::string::npos);
  EXPECT_EQ(count(plain, "★"), 2u) << "one star for the fastest, one for the smallest peak";
  EXPECT_GE(count(plain, "█"), 8u);  // 4 configs x 2 measured contexts
  EXPECT_EQ(count(plain, "failed"), 8u);  // 4 table rows + 4 chart rows at 4096
}

TEST_F(ReportOfRealRun, CsvHasOneRowPerSampleAndJsonRoundTrips) {
  const std::string csv = render_csv(*run_, *samples_);
  EXPECT_EQ(count(csv, "\n"), samples_->size() + 1);
  EXPECT_EQ(csv.rfind("run_id,host,model,config,context_tokens,", 0), 0u);
  for (const std::string& c : kConfigs) EXPECT_NE(csv.find("," + c + ","), std::string::npos) << c;
  const auto j = nlohmann::json::parse(render_json(*run_, *samples_));
  EXPECT_EQ(j.at("run").at("model_bytes"), 32865168);
  EXPECT_EQ(j.at("run").at("engine_config").at("configs").size(), 4u);
  EXPECT_EQ(j.at("samples").size(), samples_->size());
  EXPECT_EQ(j.at("summary").size(), 12u);  // 4 configs x 3 contexts
  for (const auto& row : j.at("summary")) {
    if (row.at("context") == 4096) {
      EXPECT_EQ(row.at("n"), 0);
      EXPECT_FALSE(row.at("error_messages").empty());
    } else {
      EXPECT_GT(row.at("decode_tok_s_median").get<double>(), 0);
      EXPECT_GT(row.at("kv_cache_bytes_median").get<double>(), 0);
    }
  }
  // The drive probed beside each streaming sample that read during decode, null elsewhere; the CSV carries it too.
  int probed = 0;
  for (const auto& row : j.at("samples")) {
    if (row.at("decode_ssd_bytes_read").get<int64_t>() > 0 && row.at("error").is_null()) {
      EXPECT_GT(row.at("drive_read_bps").get<double>(), 1e6) << row.dump();
      ++probed;
    } else {
      EXPECT_TRUE(row.at("drive_read_bps").is_null()) << row.dump();
    }
  }
  EXPECT_GT(probed, 0);
  EXPECT_NE(csv.find(",decode_ssd_bytes_read,drive_read_bps,error\n"), std::string::npos);
}

// ---- lmlab gate (the executable) ----

Sample synthetic(const std::string& config, int64_t rep, double tok_s) {
  Sample s;
  s.config = config;
  s.context_tokens = 512;
  s.repetition = rep;
  s.prompt_tokens = 512;
  s.prompt_ns = 100'000'000;
  s.decode_tokens = 32;
  s.decode_ns = static_cast<int64_t>(std::llround(32.0 / tok_s * 1e9));
  s.ttft_ns = 110'000'000;
  s.kv_cache_bytes = 1 << 20;
  return s;
}

// GPU runs get a GPU memory column (the most a sample of the row held); CPU runs do not.
TEST(ReportGpuMemory, AColumnOnlyWhenSamplesCarryIt) {
  RunInfo run;
  run.host = "gpu-box";
  run.model = "m";
  std::vector<Sample> samples;
  for (int rep = 0; rep < 3; ++rep) samples.push_back(synthetic("vanilla", rep, 100));
  EXPECT_EQ(render_markdown(run, samples).find("GPU memory"), std::string::npos);
  EXPECT_EQ(render_ansi(run, samples, false).find("GPU mem"), std::string::npos);
  for (Sample& s : samples) s.gpu_memory_bytes = (int64_t{3} << 30) + s.repetition * (int64_t{1} << 29);
  samples.push_back(synthetic("turbo", 0, 90));  // a row without the figure shows an empty cell
  const std::string md = render_markdown(run, samples);
  EXPECT_NE(md.find("| Peak memory | GPU memory | KV cache |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 4.00 GiB | 1.00 MiB |"), std::string::npos) << md;  // the max of the three samples
  const std::string ansi = render_ansi(run, samples, false);
  EXPECT_NE(ansi.find("GPU mem"), std::string::npos) << ansi;
  EXPECT_NE(ansi.find("4.00 GiB"), std::string::npos) << ansi;
}

// ---- the configuration section and the decode ratios (synthetic runs, rendered directly) ----

// A run's engine config as the harness records it: {"configs": [{"name": ..., "options": {...}}, ...]}.
std::string engine_config(const std::vector<std::pair<std::string, nlohmann::json>>& configs) {
  nlohmann::json j = {{"configs", nlohmann::json::array()}};
  for (const auto& [name, options] : configs) j["configs"].push_back({{"name", name}, {"options", options}});
  return j.dump();
}

Sample sample_of(int64_t run_id, const std::string& config, int64_t context, int64_t rep, double tok_s) {
  Sample s = synthetic(config, rep, tok_s);
  s.run_id = run_id;
  s.context_tokens = s.prompt_tokens = context;
  return s;
}

// The markdown line that starts with `start` (e.g. "| Vanilla | 1 |"), or "" when none does.
std::string line_starting(const std::string& text, const std::string& start) {
  const size_t at = text.find("\n" + start);
  if (at == std::string::npos) return "";
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

// A merged report lists every config that has samples, each with the engine options of the runs its samples come
// from (not only the last run's): a config the runs ran differently gets a row per variant with its runs.
TEST(ReportConfigurations, MergedRunsListEveryConfigWithItsRunsOptions) {
  RunInfo a, b;
  a.id = 1;
  b.id = 2;
  a.host = b.host = "h";
  a.engine_config_json = engine_config({{"vanilla", {{"threads", 4}}}, {"turbo", {{"kv_mode", "turbo"}, {"threads", 4}}}});
  b.engine_config_json = engine_config({{"turbo", {{"kv_mode", "turbo"}, {"threads", 4}}}, {"vanilla", {{"threads", 8}}}});
  // Run 1 measured vanilla only (its turbo has no samples); run 2 measured both.
  const std::vector<Sample> samples = {sample_of(1, "vanilla", 512, 0, 100), sample_of(2, "turbo", 512, 0, 90),
                                       sample_of(2, "vanilla", 4096, 0, 50)};
  ReportExtras extras;
  extras.merged_runs = {a, b};
  const std::string md = render_markdown(b, samples, extras);
  const std::string section = md.substr(md.find("## Configurations"));
  EXPECT_NE(section.find("| Config | Runs | Engine options |"), std::string::npos) << section;
  EXPECT_NE(line_starting(section, "| Vanilla | 1 | KV f32 · ").find("threads: 4"), std::string::npos) << section;
  EXPECT_NE(line_starting(section, "| Vanilla | 2 | KV f32 · ").find("threads: 8"), std::string::npos) << section;
  EXPECT_NE(line_starting(section, "| TurboQuant | 2 | KV turbo (K5 V4"), "") << section;
  EXPECT_EQ(count(section, "| TurboQuant |"), 1u) << section;
  EXPECT_NE(section.find("Vanilla ran with different engine options in different runs"), std::string::npos) << section;

  // One run alone keeps its own list, without a Runs column.
  const std::string single = render_markdown(b, {samples[1], samples[2]});
  EXPECT_NE(single.find("| Config | Engine options |\n|---|---|\n| TurboQuant | KV turbo"), std::string::npos) << single;
}

// On a GPU the plain KV modes are stored as f16 rows (lmlab/kv_storage.h): the label says what is stored; the
// compressed modes and every CPU config read as before.
TEST(ReportConfigurations, CudaPlainKvIsLabelledF16AndCpuIsUnchanged) {
  EXPECT_EQ(kv_mode_stored(KvMode::f32, Device::cuda), KvMode::f16);
  EXPECT_EQ(kv_mode_stored(KvMode::f32, Device::cpu), KvMode::f32);
  EXPECT_EQ(kv_mode_stored(KvMode::turbo, Device::cuda), KvMode::turbo);
  RunInfo run;
  run.engine_config_json = engine_config({{"vanilla", {{"device", "cuda"}, {"kv_mode", "f32"}}},
                                          {"turbo", {{"device", "cuda"}, {"kv_mode", "turbo"}}},
                                          {"on-cpu", {{"device", "cpu"}, {"kv_mode", "f32"}}}});
  const std::string md = render_markdown(run, {synthetic("vanilla", 0, 100)});
  EXPECT_NE(line_starting(md, "| Vanilla | KV f16 on the GPU (f32 on any CPU layer) · weights in memory"), "") << md;
  EXPECT_NE(line_starting(md, "| TurboQuant | KV turbo (K5 V4, every token compressed) · "), "") << md;
  EXPECT_NE(line_starting(md, "| on-cpu | KV f32 · weights in memory"), "") << md;
  EXPECT_EQ(count(md, "KV f32"), 1u) << md;
}

// The median decode tok/s of (config, context), from the samples (odd counts: the middle one).
double median_tok_s(const std::vector<Sample>& samples, const std::string& config, int64_t context) {
  std::vector<double> v;
  for (const Sample& s : samples)
    if (s.config == config && s.context_tokens == context) v.push_back(s.decode_tokens * 1e9 / static_cast<double>(s.decode_ns));
  std::sort(v.begin(), v.end());
  EXPECT_EQ(v.size() % 2, 1u);
  return v.at(v.size() / 2);
}

// The ratio table's baseline is the scenario's first config (here vanilla, though turbo's samples come first), each
// cell a config's median over the baseline's at one context; "-" where either is missing; no table without it.
TEST(ReportDecodeRatios, EachConfigsMedianOverTheBaselinesPerContext) {
  RunInfo run;
  run.engine_config_json = engine_config({{"vanilla", nlohmann::json::object()},
                                          {"ssd", {{"stream_experts", true}}},
                                          {"turbo", {{"kv_mode", "turbo"}}}});
  std::vector<Sample> samples;
  for (const auto& [config, context, rates] : std::vector<std::tuple<std::string, int64_t, std::vector<double>>>{
           {"turbo", 512, {90, 80, 85}}, {"turbo", 4096, {60, 70, 65}}, {"ssd", 512, {30}},
           {"vanilla", 512, {100, 120, 110}}, {"vanilla", 4096, {40, 50, 45}}})
    for (size_t rep = 0; rep < rates.size(); ++rep) samples.push_back(sample_of(0, config, context, rep, rates[rep]));
  const auto ratio = [&](const std::string& config, int64_t context) {
    return fmt::format("{:.2f}", median_tok_s(samples, config, context) / median_tok_s(samples, "vanilla", context));
  };

  const std::string md = render_markdown(run, samples);
  const size_t table = md.find("## Decode relative to Vanilla\n");
  ASSERT_NE(table, std::string::npos) << md;
  EXPECT_LT(md.find("## Scoreboard"), table);
  EXPECT_LT(table, md.find("## Context 512 tokens"));
  const std::string section = md.substr(table, md.find("\n## ", table + 1) - table);
  EXPECT_NE(section.find("| Config | 512 | 4096 |\n"), std::string::npos) << section;
  EXPECT_EQ(line_starting(section, "| TurboQuant |"), "| TurboQuant | " + ratio("turbo", 512) + " | " + ratio("turbo", 4096) + " |")
      << section;
  EXPECT_EQ(line_starting(section, "| SSD Stream |"), "| SSD Stream | " + ratio("ssd", 512) + " | - |") << section;
  EXPECT_EQ(line_starting(section, "| Vanilla |"), "") << "the baseline has no row";

  const std::string ansi = render_ansi(run, samples, false);
  const size_t ansi_table = ansi.find("decode relative to Vanilla");
  ASSERT_NE(ansi_table, std::string::npos) << ansi;
  EXPECT_LT(ansi.find("configuration scoreboard"), ansi_table);
  std::istringstream turbo_line(line_starting(ansi.substr(ansi_table), "TurboQuant "));
  std::string name, at_512, at_4096;
  turbo_line >> name >> at_512 >> at_4096;
  EXPECT_EQ(at_512, ratio("turbo", 512)) << ansi;
  EXPECT_EQ(at_4096, ratio("turbo", 4096)) << ansi;

  std::erase_if(samples, [](const Sample& s) { return s.config == "vanilla"; });
  EXPECT_EQ(render_markdown(run, samples).find("Decode relative to"), std::string::npos);
  EXPECT_EQ(render_ansi(run, samples, false).find("decode relative to"), std::string::npos);
}

// ---- a published reference beside the decode ratios ----

// The reference block a run records (the harness's reference_json) for a scenario of vanilla (the baseline), ssd and
// turbo at 512 and 4096: turbo 1.00 / 0.41, ssd 0.13 at 512 only.
std::string recorded_reference(const std::string& name, const std::string& description = "an M5 Pro sweep") {
  return reference_json(parse_scenario(R"({"name": "t", "contexts": [512, 4096],
      "configs": [{"name": "vanilla"}, {"name": "ssd"}, {"name": "turbo"}],
      "reference": {"name": ")" + name + R"(", "description": ")" + description + R"(",
                    "decode_ratios": {"turbo": {"512": 1.0, "4096": 0.41}, "ssd": {"512": 0.13}}}})",
                                       "r.json"));
}

// A run of `configs` (the first is the baseline) whose engine config records `reference` (a block, or "null").
RunInfo run_recording(int64_t id, const std::string& reference,
                      const std::vector<std::string>& configs = {"vanilla", "ssd", "turbo"}) {
  RunInfo run;
  run.id = id;
  run.host = "h";
  std::vector<std::pair<std::string, nlohmann::json>> recorded;
  for (const std::string& c : configs) recorded.emplace_back(c, nlohmann::json::object());
  nlohmann::json j = nlohmann::json::parse(engine_config(recorded));
  j["reference"] = nlohmann::json::parse(reference);
  run.engine_config_json = j.dump();
  return run;
}

// Vanilla at 100 / 50 tok/s at 512 / 4096, SSD Stream 30 at 512 only, TurboQuant 90 / 25: ratios 0.30, and 0.90 / 0.50.
std::vector<Sample> reference_samples(int64_t run_id = 0) {
  return {sample_of(run_id, "vanilla", 512, 0, 100), sample_of(run_id, "vanilla", 4096, 0, 50),
          sample_of(run_id, "ssd", 512, 0, 30),      sample_of(run_id, "turbo", 512, 0, 90),
          sample_of(run_id, "turbo", 4096, 0, 25)};
}

// The markdown section from `heading` to the next one.
std::string section_of(const std::string& md, const std::string& heading) {
  const size_t at = md.find(heading);
  return at == std::string::npos ? "" : md.substr(at, md.find("\n## ", at + 1) + 1 - at);
}

const std::string kRatiosIntro =
    "## Decode relative to Vanilla\n\nEach config's median decode tok/s over Vanilla's at the same context (1.00 = as fast; "
    "- where either has no usable sample).\n\n";

// The run's reference: a sentence above the table and a column per context after lmlab's ("-" where it gives none);
// without one the table is as it always was.
TEST(ReportDecodeRatios, APublishedReferenceSitsBesideLmlabsRatios) {
  const std::string md = render_markdown(run_recording(0, recorded_reference("SwiftLM")), reference_samples());
  EXPECT_EQ(section_of(md, "## Decode relative to"),
            kRatiosIntro +
                "SwiftLM's published ratios beside lmlab's: an M5 Pro sweep.\n\n"
                "| Config | 512 | 4096 | SwiftLM 512 | SwiftLM 4096 |\n|---|---|---|---|---|\n"
                "| SSD Stream | 0.30 | - | 0.13 | - |\n"
                "| TurboQuant | 0.90 | 0.50 | 1.00 | 0.41 |\n\n")
      << md;
  const std::string ansi = render_ansi(run_recording(0, recorded_reference("SwiftLM")), reference_samples(), false);
  const size_t table = ansi.find("decode relative to Vanilla");
  ASSERT_NE(table, std::string::npos) << ansi;
  const std::string after = ansi.substr(table);
  EXPECT_NE(after.find("\nSwiftLM's published ratios beside lmlab's: an M5 Pro sweep.\n"), std::string::npos) << ansi;
  std::istringstream header(line_starting(after, "config "));
  const std::vector<std::string> heading{std::istream_iterator<std::string>(header), std::istream_iterator<std::string>()};
  EXPECT_EQ(heading, (std::vector<std::string>{"config", "512", "4096", "SwiftLM", "512", "SwiftLM", "4096"})) << ansi;
  std::istringstream turbo(line_starting(after, "TurboQuant "));
  const std::vector<std::string> cells{std::istream_iterator<std::string>(turbo), std::istream_iterator<std::string>()};
  EXPECT_EQ(cells, (std::vector<std::string>{"TurboQuant", "0.90", "0.50", "1.00", "0.41"})) << ansi;
  // The reference's columns line up under their headings (each as wide as "SwiftLM 4096").
  EXPECT_EQ(line_starting(after, "config ").size(), line_starting(after, "TurboQuant ").size()) << ansi;

  const std::string plain = render_markdown(run_recording(0, "null"), reference_samples());
  EXPECT_EQ(section_of(plain, "## Decode relative to"),
            kRatiosIntro + "| Config | 512 | 4096 |\n|---|---|---|\n| SSD Stream | 0.30 | - |\n| TurboQuant | 0.90 | 0.50 |\n\n")
      << plain;
  EXPECT_EQ(render_ansi(run_recording(0, "null"), reference_samples(), false).find("published"), std::string::npos);
  const std::string undescribed = render_markdown(run_recording(0, recorded_reference("SwiftLM", "")), reference_samples());
  EXPECT_NE(undescribed.find("\n\nSwiftLM's published ratios beside lmlab's.\n\n| Config |"), std::string::npos) << undescribed;
}

// A reference name is user text: with an en dash ("SwiftLM – M5", 14 bytes in 12 terminal columns) or CJK (two columns
// a character in 3 bytes), its columns are as wide as the heading shows, not as its UTF-8 bytes: each heading follows
// its two separating spaces, and every row ends in the header's last column.
TEST(ReportDecodeRatios, ANonAsciiReferenceNameHeadsColumnsAsWideAsItShows) {
  auto right = [](const std::string& ascii, size_t columns) { return std::string(columns - ascii.size(), ' ') + ascii; };
  for (const auto& [name, columns] : {std::pair<std::string, size_t>{"SwiftLM – M5", 12}, {"参考 M5", 7}}) {
    const std::string ansi = render_ansi(run_recording(0, recorded_reference(name)), reference_samples(), false);
    const size_t table = ansi.find("decode relative to Vanilla");
    ASSERT_NE(table, std::string::npos) << ansi;
    const std::string after = ansi.substr(table);
    // "TurboQuant" (10 columns) sets the config column; lmlab's columns are 8 wide; the reference's as wide as
    // "<name> 512" and "<name> 4096".
    const std::string lmlab_headings = "  " + right("512", 8) + "  " + right("4096", 8);
    EXPECT_EQ(line_starting(after, "config "), "config    " + lmlab_headings + "  " + name + " 512  " + name + " 4096")
        << ansi;
    EXPECT_EQ(line_starting(after, "SSD Stream "),
              "SSD Stream  " + right("0.30", 8) + "  " + right("-", 8) + "  " + right("0.13", columns + 4) + "  " + right("-", columns + 5))
        << ansi;
    EXPECT_EQ(line_starting(after, "TurboQuant "),
              "TurboQuant  " + right("0.90", 8) + "  " + right("0.50", 8) + "  " + right("1.00", columns + 4) + "  " +
                  right("0.41", columns + 5))
        << ansi;
  }
}

// The regression suite's step lines: a model name is the scenario's user text, so the step column is as wide as the
// longest "<model> <step>" shows (an en dash is 3 bytes in one column), and every summary starts in the same column.
TEST(ReportRegression, StepSummariesLineUpAfterANonAsciiModelName) {
  RunInfo run;
  run.id = 7;
  run.state = "done";
  const std::vector<RegressionCheck> checks = {{"qwen3 – 4bit", "1 long", "answer", "x", "x", true},
                                               {"m", "1 long", "answer", "x", "x", true}};
  const std::string ansi = render_regression_ansi(run, checks, false);
  // "qwen3 – 4bit 1 long" is 19 columns: the column is that wide, and "m 1 long" is padded to it.
  EXPECT_NE(ansi.find("\n  ✓ qwen3 – 4bit 1 long  answer = reference\n"), std::string::npos) << ansi;
  EXPECT_NE(ansi.find("\n  ✓ m 1 long" + std::string(11, ' ') + "  answer = reference\n"), std::string::npos) << ansi;
}

// With --runs the last run that recorded a reference supplies it; ReportExtras.reference_json (--reference) replaces
// it; a reference over another baseline than the table's is named, not shown.
TEST(ReportDecodeRatios, TheLastRunsReferenceOrTheGivenOneAndNeverOverAnotherBaseline) {
  ReportExtras extras;
  extras.merged_runs = {run_recording(1, recorded_reference("Alpha")), run_recording(2, recorded_reference("Beta")),
                        run_recording(3, "null")};
  std::string md = render_markdown(extras.merged_runs.back(), reference_samples(), extras);
  EXPECT_NE(md.find("| Config | 512 | 4096 | Beta 512 | Beta 4096 |\n"), std::string::npos) << md;
  EXPECT_EQ(md.find("Alpha"), std::string::npos) << md;
  EXPECT_NE(render_ansi(extras.merged_runs.back(), reference_samples(), false, extras).find("Beta 4096"), std::string::npos);

  extras.reference_json = recorded_reference("Gamma");
  md = render_markdown(extras.merged_runs.back(), reference_samples(), extras);
  EXPECT_NE(md.find("| Config | 512 | 4096 | Gamma 512 | Gamma 4096 |\n"), std::string::npos) << md;
  EXPECT_EQ(md.find("Beta"), std::string::npos) << md;

  // A run whose first config was turbo (bench --configs turbo,...): its ratios are over TurboQuant, SwiftLM's over Vanilla.
  const RunInfo turbo_first = run_recording(0, recorded_reference("SwiftLM"), {"turbo", "vanilla", "ssd"});
  md = render_markdown(turbo_first, reference_samples());
  const std::string section = section_of(md, "## Decode relative to TurboQuant");
  EXPECT_NE(section.find("\n\nSwiftLM's published ratios are over Vanilla, not TurboQuant: not shown beside these.\n\n| Config | "
                         "512 | 4096 |\n|---|---|---|\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(section.find("SwiftLM 512"), std::string::npos) << section;
  EXPECT_NE(render_ansi(turbo_first, reference_samples(), false).find("not shown beside these."), std::string::npos);
}

// A sample of a streaming config: 33 decode tokens in `decode_ns`, `mb_per_step` x 10^6 SSD bytes read by each decode
// step after the first (the 32 steps decode_ssd_bytes_read covers), the drive probed at `drive_bps` (0: not probed).
Sample streamed_sample(const std::string& config, int64_t context, int64_t rep, int64_t decode_ns, int64_t mb_per_step,
                       double drive_bps) {
  Sample s = sample_of(0, config, context, rep, 1);
  s.decode_tokens = 33;
  s.decode_ns = decode_ns;
  s.decode_ssd_bytes_read = 32 * mb_per_step * 1'000'000;
  s.ssd_bytes_read = s.decode_ssd_bytes_read + 50'000'000;  // the prefill's and first step's reads are not counted
  s.drive_read_bps = drive_bps;
  return s;
}

// Written to a database and read back, as `lmlab report` does. Two samples of SSD Stream at 512: 33 tokens in 1.1 s
// and 0.66 s (30 and 50 tok/s, median 40), 8 and 10 MB per step after the first (median 9 MB/token), drives of 800
// and 1300 MB/s (median 1050). Read rate 9 x 40 = 360 MB/s, 360 / 1050 = 34% of the drive; ceiling 1050 / 9 =
// 116.7 tok/s, 40 / 116.7 = 34% of it. At 4096 one sample, not probed: 6 MB/token at 33 / 1.65 s = 20 tok/s, 120
// MB/s. Vanilla read nothing: no row; with no config streaming there is no section.
TEST(ReportStreaming, MedianReadRateAndCeilingAgainstTheProbedDrive) {
  const fs::path dir = temp_dir("streaming");
  std::vector<Sample> written = {streamed_sample("ssd", 512, 0, 1'100'000'000, 8, 800e6),
                                 streamed_sample("ssd", 512, 1, 660'000'000, 10, 1300e6),
                                 streamed_sample("ssd", 4096, 0, 1'650'000'000, 6, 0),
                                 sample_of(0, "vanilla", 512, 0, 100)};
  ResultsStore store = ResultsStore::open((dir / "r.db").string());
  RunInfo info;
  info.host = "h";
  const int64_t id = store.begin_run(info);
  store.add_samples(id, written);
  const RunInfo run = *store.run(id);
  std::vector<Sample> samples = store.samples(id);

  const std::string md = render_markdown(run, samples);
  const size_t table = md.find("## Expert streaming against the drive\n");
  ASSERT_NE(table, std::string::npos) << md;
  const std::string section = md.substr(table, md.find("\n## ", table + 1) - table);
  EXPECT_EQ(line_starting(section, "| SSD Stream | 512 |"), "| SSD Stream | 512 | 9.00 | 360 | 1050 | 34% | 116.7 | 40.0 | 34% |")
      << section;
  EXPECT_EQ(line_starting(section, "| SSD Stream | 4096 |"), "| SSD Stream | 4096 | 6.00 | 120 | not probed | - | - | 20.0 | - |")
      << section;
  EXPECT_EQ(line_starting(section, "| Vanilla |"), "") << section;

  const std::string ansi = render_ansi(run, samples, false);
  const size_t ansi_table = ansi.find("expert streaming against the drive");
  ASSERT_NE(ansi_table, std::string::npos) << ansi;
  std::istringstream lines(ansi.substr(ansi_table, ansi.find("\n\n", ansi_table) - ansi_table));
  std::vector<std::vector<std::string>> cells;  // the table's lines split at spaces, title and header included
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    cells.emplace_back(std::istream_iterator<std::string>(words), std::istream_iterator<std::string>());
  }
  ASSERT_EQ(cells.size(), 4u) << ansi;
  EXPECT_EQ(cells[2], (std::vector<std::string>{"SSD", "Stream", "512", "9.00", "360", "1050", "34%", "116.7", "40.0", "34%"}))
      << ansi;
  EXPECT_EQ(cells[3], (std::vector<std::string>{"SSD", "Stream", "4096", "6.00", "120", "not", "probed", "-", "-", "20.0", "-"}))
      << ansi;

  for (Sample& s : samples) s.decode_ssd_bytes_read = 0;  // the prefill read, the decode did not
  EXPECT_EQ(render_markdown(run, samples).find("Expert streaming"), std::string::npos);
  EXPECT_EQ(render_ansi(run, samples, false).find("expert streaming"), std::string::npos);
  fs::remove_all(dir);
}

int64_t add_run(ResultsStore& store, const std::string& config, double tok_s, const std::string& host = "gate-test") {
  RunInfo info;
  info.host = host;
  info.host_fingerprint = "cpu=synthetic";  // one machine: absolute times compare
  info.scenario = "synthetic";
  info.model = "none";
  info.model_bytes = 1;
  const int64_t id = store.begin_run(info);
  std::vector<Sample> samples;
  for (int rep = 0; rep < 6; ++rep) samples.push_back(synthetic(config, rep, tok_s * (1.0 + 0.01 * rep)));
  store.add_samples(id, samples);
  return id;
}

int run_cli(const std::string& args) {
  const std::string cmd = std::string(LMLAB_CLI_PATH) + " " + args + " > /dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GateCli, ExitCodesPassRegressionAndCannotCompare) {
  const fs::path dir = temp_dir("gate");
  const std::string db = (dir / "gate.db").string();
  int64_t base = 0, same = 0, slower = 0, faster = 0;
  {
    ResultsStore store = ResultsStore::open(db);
    base = add_run(store, "vanilla", 100.0);
    same = add_run(store, "vanilla", 100.5);
    slower = add_run(store, "vanilla", 80.0);   // 20% slower, 6 vs 6 samples: significant
    faster = add_run(store, "vanilla", 130.0);
  }
  auto gate_args = [&](int64_t b, int64_t c) {
    return "gate --db " + db + " --baseline " + std::to_string(b) + " --candidate " + std::to_string(c);
  };
  EXPECT_EQ(run_cli(gate_args(base, same)), 0);
  EXPECT_EQ(run_cli(gate_args(base, faster)), 0);
  EXPECT_EQ(run_cli(gate_args(base, slower)), 1);
  EXPECT_EQ(run_cli(gate_args(base, slower) + " --threshold 0.25"), 0);  // 20% is within a 25% threshold
  EXPECT_EQ(run_cli("gate --db " + db + " --baseline-file " + db + " --baseline " + std::to_string(base) +
                    " --candidate " + std::to_string(slower)), 1);
  EXPECT_EQ(run_cli(gate_args(base, 99)), 2);                              // no such run
  EXPECT_EQ(run_cli(gate_args(base, same) + " --baseline-file " + (dir / "missing.db").string()), 2);
  fs::remove_all(dir);
}

TEST(ReportCli, WritesTheMarkdownFileUnderItsHostNameAndRefusesAMissingDatabase) {
  const fs::path dir = temp_dir("cli");
  const std::string db = (dir / "r.db").string();
  {
    ResultsStore store = ResultsStore::open(db);
    add_run(store, "turbo", 50.0);
  }
  EXPECT_EQ(run_cli("report --db " + db + " --format md --out-dir " + dir.string()), 0);
  EXPECT_TRUE(fs::is_regular_file(dir / "profiling_results_gate-test.md"));
  EXPECT_EQ(run_cli("report --db " + db + " --format csv --out " + (dir / "r.csv").string()), 0);
  EXPECT_GT(fs::file_size(dir / "r.csv"), 0u);
  EXPECT_EQ(run_cli("report --db " + (dir / "none.db").string()), 1);
  EXPECT_FALSE(fs::exists(dir / "none.db"));  // a report never creates a database
  EXPECT_EQ(run_cli("report --db " + db + " --run 42"), 1);
  fs::remove_all(dir);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A CSV report's rows counted by "RUN CONFIG" (its first and fourth columns).
std::map<std::string, int> csv_rows_per_run_and_config(const fs::path& csv_path) {
  std::ifstream csv(csv_path);
  std::string line;
  std::getline(csv, line);  // header
  std::map<std::string, int> rows;
  while (std::getline(csv, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) fields.push_back(x);
    ++rows[fields.at(0) + " " + fields.at(3)];
  }
  return rows;
}

// The Samples column (the last) of a config's row in the markdown report's table of one context; "" when absent.
std::string markdown_samples_cell(const std::string& md, int64_t context, const std::string& display_name) {
  const size_t table = md.find("## Context " + std::to_string(context) + " tokens");
  if (table == std::string::npos) return "";
  const size_t row = md.find("\n| " + display_name + " | ", table);
  const size_t next_table = md.find("## ", table + 1);
  if (row == std::string::npos || row > next_table) return "";
  const std::string line = md.substr(row + 1, md.find('\n', row + 1) - row - 1);  // "| Vanilla | ... | 12 |"
  const size_t last_bar = line.rfind(" |");
  const size_t before = line.rfind("| ", last_bar - 1);
  return line.substr(before + 2, last_bar - before - 2);
}

// A sweep measured over several sittings (the H200's, over device calls): --runs renders their samples as one
// report, each sample keeping its run, and refuses runs of another sweep, a run named twice, and --run beside it.
TEST(ReportCli, RunsOfOneSweepMergeIntoOneReport) {
  const fs::path dir = temp_dir("merge");
  const std::string db = (dir / "r.db").string();
  int64_t a = 0, b = 0, other_host = 0;
  {
    ResultsStore store = ResultsStore::open(db);
    a = add_run(store, "vanilla", 100.0);
    b = add_run(store, "turbo", 50.0);
    other_host = add_run(store, "turbo", 50.0, "another-host");
  }
  const std::string runs = std::to_string(a) + "," + std::to_string(b);
  ASSERT_EQ(run_cli("report --db " + db + " --runs " + runs + " --format csv --out " + (dir / "m.csv").string()), 0);
  EXPECT_EQ(csv_rows_per_run_and_config(dir / "m.csv"), (std::map<std::string, int>{{std::to_string(a) + " vanilla", 6},
                                                                                     {std::to_string(b) + " turbo", 6}}));
  ASSERT_EQ(run_cli("report --db " + db + " --runs " + runs + " --format md --out-dir " + dir.string()), 0);
  const std::string md = read_text(dir / "profiling_results_gate-test.md");
  EXPECT_NE(md.find("| Runs (commit, date; samples of all) | " + std::to_string(a) + " ("), std::string::npos) << md;
  EXPECT_NE(md.find(", " + std::to_string(b) + " ("), std::string::npos);
  EXPECT_NE(md.find("| Vanilla |"), std::string::npos);
  EXPECT_NE(md.find("| TurboQuant |"), std::string::npos);
  EXPECT_EQ(run_cli("report --db " + db + " --runs " + runs + "," + std::to_string(other_host)), 1);
  EXPECT_EQ(run_cli("report --db " + db + " --runs " + std::to_string(a) + "," + std::to_string(a)), 1);
  EXPECT_EQ(run_cli("report --db " + db + " --runs " + runs + ",42"), 1);
  EXPECT_NE(run_cli("report --db " + db + " --runs " + runs + " --run " + std::to_string(a)), 0);
  fs::remove_all(dir);
}

// A sweep re-measured in part (a later device call re-ran a cell with a newer binary): without --supersede a cell
// two runs measured counts both runs' samples as repetitions; with it, the later run in the --runs list (not the
// larger id) keeps the cell alone, and the header says whose samples were dropped.
TEST(ReportCli, SupersedeKeepsOnlyTheLaterRunsSamplesOfACellBothMeasured) {
  const fs::path dir = temp_dir("supersede");
  const std::string db = (dir / "r.db").string();
  int64_t a = 0, b = 0;
  {
    ResultsStore store = ResultsStore::open(db);
    a = add_run(store, "vanilla", 100.0);
    std::vector<Sample> turbo;
    for (int rep = 0; rep < 6; ++rep) turbo.push_back(synthetic("turbo", rep, 50.0));
    store.add_samples(a, turbo);
    b = add_run(store, "vanilla", 200.0);  // re-measures a's vanilla @ 512 only
  }
  const std::string A = std::to_string(a), B = std::to_string(b);
  const fs::path csv = dir / "m.csv", ansi = dir / "m.txt", md_path = dir / "profiling_results_gate-test.md";
  auto report = [&](const std::string& runs, const std::string& flag) {
    return run_cli("report --db " + db + " --runs " + runs + flag + " --format csv --out " + csv.string()) == 0 &&
           run_cli("report --db " + db + " --runs " + runs + flag + " --format ansi --no-color --out " + ansi.string()) == 0 &&
           run_cli("report --db " + db + " --runs " + runs + flag + " --format md --out-dir " + dir.string()) == 0;
  };

  ASSERT_TRUE(report(A + "," + B, ""));
  EXPECT_EQ(csv_rows_per_run_and_config(csv),
            (std::map<std::string, int>{{A + " vanilla", 6}, {A + " turbo", 6}, {B + " vanilla", 6}}));
  std::string md = read_text(md_path);
  EXPECT_EQ(markdown_samples_cell(md, 512, "Vanilla"), "12") << md;
  EXPECT_EQ(markdown_samples_cell(md, 512, "TurboQuant"), "6") << md;
  EXPECT_EQ(md.find("uperseded"), std::string::npos) << md;
  EXPECT_EQ(read_text(ansi).find("uperseded"), std::string::npos);

  ASSERT_TRUE(report(A + "," + B, " --supersede"));
  EXPECT_EQ(csv_rows_per_run_and_config(csv), (std::map<std::string, int>{{A + " turbo", 6}, {B + " vanilla", 6}}));
  md = read_text(md_path);
  EXPECT_EQ(markdown_samples_cell(md, 512, "Vanilla"), "6") << md;
  EXPECT_EQ(markdown_samples_cell(md, 512, "TurboQuant"), "6") << md;
  const std::string line = "run " + A + "'s Vanilla @ 512 superseded by run " + B + " (6 samples dropped)";
  EXPECT_NE(md.find("| Runs (commit, date; samples of all but the superseded) | " + A + " ("), std::string::npos) << md;
  EXPECT_NE(md.find("| Superseded | " + line + " |"), std::string::npos) << md;
  EXPECT_NE(read_text(ansi).find(line + "\n"), std::string::npos) << read_text(ansi);

  ASSERT_TRUE(report(B + "," + A, " --supersede"));  // the list's order decides: a is now the later run
  EXPECT_EQ(csv_rows_per_run_and_config(csv), (std::map<std::string, int>{{A + " vanilla", 6}, {A + " turbo", 6}}));
  EXPECT_NE(read_text(md_path).find("| Superseded | run " + B + "'s Vanilla @ 512 superseded by run " + A), std::string::npos);

  EXPECT_NE(run_cli("report --db " + db + " --run " + A + " --supersede"), 0);  // --supersede needs --runs
  fs::remove_all(dir);
}

// lmlab report --reference FILE: a scenario file, read as `lmlab bench` reads it, whose reference replaces the runs'
// own (here a run recorded without one); --runs takes the last run's that has one; a file without a reference, or
// a bad one, is refused naming the file.
TEST(ReportCli, ReferenceOfTheLastRunThatHasOneOrOfTheReferenceFile) {
  const fs::path dir = temp_dir("reference");
  const std::string db = (dir / "r.db").string();
  std::string a, b, c;
  {
    ResultsStore store = ResultsStore::open(db);
    for (auto [id, reference] : {std::pair{&a, recorded_reference("Alpha")}, std::pair{&b, recorded_reference("Beta")},
                                 std::pair{&c, std::string("null")}}) {
      const int64_t run = store.begin_run(run_recording(0, reference));
      store.add_samples(run, reference_samples());
      store.end_run(run);
      *id = std::to_string(run);
    }
  }
  const fs::path md = dir / "r.md", txt = dir / "r.txt";
  auto report = [&](const std::string& args, const fs::path& out) {
    return test::run_lmlab("report --db " + db + " " + args + " --out " + out.string());
  };
  ASSERT_EQ(report("--runs " + a + "," + b + "," + c + " --format md", md).rc, 0);
  EXPECT_NE(read_text(md).find("| Config | 512 | 4096 | Beta 512 | Beta 4096 |\n"), std::string::npos) << read_text(md);
  ASSERT_EQ(report("--runs " + b + "," + a + " --format md", md).rc, 0);
  EXPECT_NE(read_text(md).find("| Alpha 512 | Alpha 4096 |\n"), std::string::npos) << read_text(md);
  ASSERT_EQ(report("--run " + c + " --format md", md).rc, 0);
  EXPECT_EQ(read_text(md).find("published"), std::string::npos) << read_text(md);

  const fs::path gamma = dir / "gamma.json";
  std::ofstream(gamma) << R"({"name": "t", "contexts": [512, 4096],
      "configs": [{"name": "vanilla"}, {"name": "ssd"}, {"name": "turbo"}],
      "reference": {"name": "Gamma", "description": "from a file", "decode_ratios": {"turbo": {"4096": 0.3}}}})";
  ASSERT_EQ(report("--run " + c + " --format md --reference " + gamma.string(), md).rc, 0);
  EXPECT_NE(read_text(md).find("Gamma's published ratios beside lmlab's: from a file.\n\n"
                               "| Config | 512 | 4096 | Gamma 512 | Gamma 4096 |\n|---|---|---|---|---|\n"
                               "| SSD Stream | 0.30 | - | - | - |\n| TurboQuant | 0.90 | 0.50 | - | 0.30 |\n"),
            std::string::npos)
      << read_text(md);
  ASSERT_EQ(report("--runs " + a + "," + b + " --format md --reference " + gamma.string(), md).rc, 0);
  EXPECT_NE(read_text(md).find("| Gamma 512 | Gamma 4096 |"), std::string::npos) << read_text(md);
  EXPECT_EQ(read_text(md).find("Beta"), std::string::npos) << read_text(md);
  ASSERT_EQ(report("--run " + c + " --no-color --reference " + gamma.string(), txt).rc, 0);
  EXPECT_NE(read_text(txt).find("Gamma's published ratios beside lmlab's: from a file."), std::string::npos) << read_text(txt);

  const std::string smoke = (fs::path(LMLAB_SOURCE_DIR) / "scenarios" / "ci-smoke.json").string();
  test::CliResult refused = report("--run " + c + " --format md --reference " + smoke, md);
  EXPECT_EQ(refused.rc, 1);
  EXPECT_NE(refused.output.find("--reference " + smoke + ": the scenario has no \"reference\" block"), std::string::npos)
      << refused.output;
  refused = report("--run " + c + " --format md --reference " + (dir / "none.json").string(), md);
  EXPECT_EQ(refused.rc, 1);
  EXPECT_NE(refused.output.find((dir / "none.json").string()), std::string::npos) << refused.output;
  std::ofstream(dir / "bad.json") << R"({"name": "t", "contexts": [512], "configs": [{"name": "vanilla"}],
      "reference": {"name": "S", "decode_ratios": {"warp": {"512": 1}}}})";
  refused = report("--run " + c + " --format md --reference " + (dir / "bad.json").string(), md);
  EXPECT_EQ(refused.rc, 1);
  EXPECT_NE(refused.output.find("bad.json: field 'reference.decode_ratios.warp'"), std::string::npos) << refused.output;
  EXPECT_EQ(report("--run " + c + " --format csv --reference " + gamma.string(), dir / "r.csv").rc, 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lmlab
