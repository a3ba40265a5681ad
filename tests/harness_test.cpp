// Harness: scenario files (the shipped ones parse; every kind of bad input, a bad "reference" included, is an error
// naming the file and the field; fuzzed in scenario_fuzz_test.cpp), and real in-process runs of ci-smoke on the
// coder fixtures into a temporary SQLite file: sample counts, decode tokens, KV bytes (turbo < vanilla), SSD bytes
// only for ssd configs, an over-context generation and `ssd` on a dense model recorded as errors while the run
// goes on; the run's recorded reference.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/harness.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

fs::path scenario_path(const std::string& name) { return fs::path(LMLAB_SOURCE_DIR) / "scenarios" / (name + ".json"); }

// The error message of parsing `text` as scenario file "bad.json" (empty when it parsed).
std::string parse_error(const std::string& text) {
  try {
    parse_scenario(text, "/tmp/bad.json");
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

// A minimal valid scenario with one top-level field replaced or added (`field` = raw JSON member text).
std::string scenario_with(const std::string& extra_members) {
  return R"({"name": "t", "contexts": [16], "configs": [{"name": "vanilla"}])" +
         (extra_members.empty() ? std::string() : ", " + extra_members) + "}";
}

TEST(HarnessScenario, ShippedScenariosParse) {
  for (const char* name : {"default", "ci-smoke", "swiftlm", "swiftlm-cuda"}) {
    SCOPED_TRACE(name);
    const Scenario s = load_scenario(scenario_path(name));
    ASSERT_EQ(s.configs.size(), 4u);
    EXPECT_EQ(s.configs[0].name, "vanilla");
    EXPECT_EQ(s.configs[3].name, "ssd+turbo");
    EXPECT_EQ(s.configs[0].options.kv_mode, KvMode::f32);
    EXPECT_FALSE(s.configs[0].options.stream_experts);
    EXPECT_TRUE(s.configs[1].options.stream_experts);
    EXPECT_EQ(s.configs[2].options.kv_mode, KvMode::turbo);
    EXPECT_TRUE(s.configs[3].options.stream_experts);
    EXPECT_EQ(s.configs[3].options.kv_mode, KvMode::turbo);
  }
  const Scenario d = load_scenario(scenario_path("default"));
  ASSERT_TRUE(d.model.has_value());
  EXPECT_EQ(d.model->filename(), "coder-moe-sparse-4bit");
  EXPECT_EQ(d.prompt.kind, PromptSource::Kind::text_file);
  EXPECT_TRUE(fs::is_regular_file(d.prompt.text_file));
  EXPECT_EQ(d.configs[1].options.expert_cache_mb, 5);
  EXPECT_EQ(d.repetitions, 3);
  EXPECT_EQ(d.decode_tokens, 32);
  EXPECT_FALSE(load_scenario(scenario_path("swiftlm")).model.has_value());  // needs --model
}

TEST(HarnessScenario, OptionsLayerDefaultsCommonPresetAndConfig) {
  const Scenario s = parse_scenario(R"({"name": "t", "contexts": [16, 32], "repetitions": 5, "decode_tokens": 4,
      "options": {"threads": 1, "ctx_size": 1024, "kv_hot_window": 64},
      "configs": [{"name": "turbo", "options": {"kv_k_bits": 3, "kv_k_qjl": true}},
                  {"name": "affine4", "preset": "vanilla", "options": {"kv_mode": "affine4", "ctx_size": 512}}]})",
                                    "/tmp/t.json");
  EXPECT_EQ(s.repetitions, 5);
  EXPECT_EQ(s.decode_tokens, 4);
  EXPECT_EQ(s.prompt.kind, PromptSource::Kind::random_ids);
  const ModelOptions& turbo = s.configs[0].options;
  EXPECT_EQ(turbo.kv_mode, KvMode::turbo);
  EXPECT_EQ(turbo.kv_k_bits, 3);
  EXPECT_TRUE(turbo.kv_k_qjl);
  EXPECT_EQ(turbo.threads, 1);
  EXPECT_EQ(turbo.kv_hot_window, 64);
  EXPECT_EQ(turbo.ctx_size, 1024);
  EXPECT_EQ(s.configs[1].options.kv_mode, KvMode::affine4);
  EXPECT_EQ(s.configs[1].options.ctx_size, 512);
  // The recorded options use the same keys the file does.
  const auto j = nlohmann::json::parse(model_options_json(turbo));
  EXPECT_EQ(j.at("kv_mode"), "turbo");
  EXPECT_EQ(j.at("kv_k_bits"), 3);
  EXPECT_EQ(j.at("stream_experts"), false);
}

TEST(HarnessScenario, EachKindOfBadInputNamesTheFileAndField) {
  struct Case {
    std::string text, field;
  };
  const std::vector<Case> cases = {
      {R"({"contexts": [16], "configs": [{"name": "vanilla"}]})", "field 'name'"},
      {scenario_with(R"("repetitons": 3)"), "field 'repetitons'"},
      {R"({"name": "t", "contexts": [], "configs": [{"name": "vanilla"}]})", "field 'contexts'"},
      {R"({"name": "t", "contexts": [16, -4], "configs": [{"name": "vanilla"}]})", "field 'contexts[1]'"},
      {R"({"name": "t", "contexts": [16, 16], "configs": [{"name": "vanilla"}]})", "field 'contexts[1]'"},
      {R"({"name": "t", "contexts": ["512"], "configs": [{"name": "vanilla"}]})", "field 'contexts[0]'"},
      {scenario_with(R"("repetitions": 0)"), "field 'repetitions'"},
      {scenario_with(R"("decode_tokens": 1.5)"), "field 'decode_tokens'"},
      {R"({"name": "t", "contexts": [16], "configs": []})", "field 'configs'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "fast"}]})", "field 'configs[0].preset'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "x", "preset": "warp"}]})", "field 'configs[0].preset'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "vanilla", "speed": 1}]})", "field 'configs[0].speed'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "vanilla"}, {"name": "vanilla"}]})", "field 'configs[1].name'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "turbo", "options": {"kv_k_bits": 7}}]})",
       "field 'configs[0].options.kv_k_bits'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "turbo", "options": {"kv_k_bits": "4"}}]})",
       "field 'configs[0].options.kv_k_bits'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "ssd", "options": {"expert_cache_gb": 1}}]})",
       "field 'configs[0].options.expert_cache_gb'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "turbo", "options": {"kv_mode": "f32"}}]})",
       "field 'configs[0].options.kv_mode'"},
      {R"({"name": "t", "contexts": [16], "configs": [{"name": "ssd", "options": {"expert_cache_policy": "fifo"}}]})",
       "field 'configs[0].options.expert_cache_policy'"},
      {scenario_with(R"("options": {"stream_experts": true})"), "field 'options.stream_experts'"},
      {scenario_with(R"("options": {"threads": true})"), "field 'options.threads'"},
      {scenario_with(R"("prompt": {"source": "lorem"})"), "field 'prompt.source'"},
      {scenario_with(R"("prompt": {"source": "text", "file": "no-such-file.txt"})"), "field 'prompt.file'"},
      {scenario_with(R"("prompt": {"source": "random", "seed": -1})"), "field 'prompt.seed'"},
      {scenario_with(R"("model": 42)"), "field 'model'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string msg = parse_error(c.text);
    ASSERT_FALSE(msg.empty()) << "parsed without an error";
    EXPECT_NE(msg.find("/tmp/bad.json: " + c.field), std::string::npos) << msg;
  }
  EXPECT_NE(parse_error("{\"name\": ").find("/tmp/bad.json"), std::string::npos);
  EXPECT_NE(parse_error("[1, 2]").find("must be a JSON object"), std::string::npos);
  try {
    load_scenario("/nonexistent/scenario.json");
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/scenario.json"), std::string::npos);
  }
}

// The shipped SwiftLM scenarios carry SwiftLM's published decode ratios, over their first config (vanilla), keyed by
// the other configs and the scenario's contexts; the run records them normalized (reference_json).
TEST(HarnessScenario, ReferenceIsReadAndNormalized) {
  const Scenario s = load_scenario(scenario_path("swiftlm"));
  ASSERT_TRUE(s.reference.has_value());
  EXPECT_EQ(s.reference->name, "SwiftLM");
  EXPECT_EQ(s.reference->baseline, "vanilla");
  EXPECT_EQ(s.reference->decode_ratios.size(), 3u);
  EXPECT_EQ(s.reference->decode_ratios.at("turbo").at(40000), 0.41);
  EXPECT_EQ(s.reference->decode_ratios.at("ssd+turbo").at(100000), 0.09);
  const auto recorded = nlohmann::json::parse(reference_json(s));
  EXPECT_EQ(recorded.at("baseline"), "vanilla");
  EXPECT_EQ(recorded.at("description"), "gemma-4-26b-a4b 4-bit on an Apple M5 Pro, SwiftLM's published sweep");
  EXPECT_EQ(recorded.at("decode_ratios").at("ssd").at("512"), 0.13);
  EXPECT_EQ(reference_json(load_scenario(scenario_path("swiftlm-cuda"))), reference_json(s));
  EXPECT_FALSE(load_scenario(scenario_path("default")).reference.has_value());
  EXPECT_EQ(reference_json(load_scenario(scenario_path("default"))), "null");

  // bench --configs may put another config first: the reference stays over the scenario's first as written.
  Scenario reordered = s;
  ScenarioOverrides o;
  o.configs = std::vector<std::string>{"turbo", "vanilla"};
  apply_overrides(reordered, o);
  EXPECT_EQ(nlohmann::json::parse(reference_json(reordered)).at("baseline"), "vanilla");

  // The description is optional (recorded as ""); a name of 32 characters, counted as characters, is the longest.
  const Scenario short_ref = parse_scenario(
      R"({"name": "t", "contexts": [512], "configs": [{"name": "vanilla"}, {"name": "turbo"}],
          "reference": {"name": "ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ", "decode_ratios": {"turbo": {"512": 1000}}}})",
      "/tmp/t.json");
  EXPECT_EQ(nlohmann::json::parse(reference_json(short_ref)).at("description"), "");
}

TEST(HarnessScenario, EachKindOfBadReferenceNamesTheFileAndField) {
  // Vanilla (the baseline), ssd and turbo at 512 and 40000, with this "reference".
  auto with_reference = [](const std::string& reference) {
    return R"({"name": "t", "contexts": [512, 40000], "configs": [{"name": "vanilla"}, {"name": "ssd"}, {"name": "turbo"}],
               "reference": )" + reference + "}";
  };
  auto with_ratios = [&](const std::string& ratios) {
    return with_reference(R"({"name": "SwiftLM", "decode_ratios": )" + ratios + "}");
  };
  struct Case {
    std::string text, field, why;
  };
  const std::vector<Case> cases = {
      {with_reference(R"("SwiftLM")"), "field 'reference'", "must be {"},
      {with_reference(R"({"name": "S", "decode_ratios": {}, "url": "x"})"), "field 'reference.url'", "unknown key"},
      {with_reference(R"({"decode_ratios": {}})"), "field 'reference.name'", "missing"},
      {with_reference(R"({"name": "", "decode_ratios": {}})"), "field 'reference.name'", "non-empty string"},
      {with_reference(R"({"name": 11, "decode_ratios": {}})"), "field 'reference.name'", "non-empty string"},
      {with_reference(R"({"name": "SwiftLM on an Apple M5 Pro, 4-bit", "decode_ratios": {}})"), "field 'reference.name'",
       "is 33 characters long: at most 32"},
      {with_reference(R"({"name": "S", "description": 5, "decode_ratios": {}})"), "field 'reference.description'",
       "must be a string"},
      {with_reference(R"({"name": "S", "description": ")" + std::string(301, 'x') + R"(", "decode_ratios": {}})"),
       "field 'reference.description'", "at most 300"},
      {with_reference(R"({"name": "S"})"), "field 'reference.decode_ratios'", "missing"},
      {with_ratios(R"([1, 2])"), "field 'reference.decode_ratios'", "must be an object"},
      {with_ratios(R"({"warp": {"512": 0.5}})"), "field 'reference.decode_ratios.warp'", "not a config of this scenario"},
      {with_ratios(R"({"vanilla": {"512": 1}})"), "field 'reference.decode_ratios.vanilla'", "is the baseline"},
      {with_ratios(R"({"turbo": 0.5})"), "field 'reference.decode_ratios.turbo'", "must be an object"},
      {with_ratios(R"({"turbo": {"4096": 0.5}})"), "field 'reference.decode_ratios.turbo.4096'", "not one of the scenario's contexts"},
      {with_ratios(R"({"turbo": {"long": 0.5}})"), "field 'reference.decode_ratios.turbo.long'", "written as a decimal integer"},
      {with_ratios(R"({"turbo": {"0512": 0.5}})"), "field 'reference.decode_ratios.turbo.0512'", "not one of the scenario's contexts"},
      {with_ratios(R"({"turbo": {"512": 0}})"), "field 'reference.decode_ratios.turbo.512'", "must be a number in (0, 1000]"},
      {with_ratios(R"({"turbo": {"512": -0.4}})"), "field 'reference.decode_ratios.turbo.512'", "must be a number in (0, 1000]"},
      {with_ratios(R"({"turbo": {"512": "NaN"}})"), "field 'reference.decode_ratios.turbo.512'", "must be a number in (0, 1000]"},
      {with_ratios(R"({"turbo": {"512": 1000.5}})"), "field 'reference.decode_ratios.turbo.512'", "must be a number in (0, 1000]"},
      {with_ratios(R"({"turbo": {"512": null}})"), "field 'reference.decode_ratios.turbo.512'", "must be a number in (0, 1000]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string msg = parse_error(c.text);
    ASSERT_FALSE(msg.empty()) << "parsed without an error";
    EXPECT_NE(msg.find("/tmp/bad.json: " + c.field), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.why), std::string::npos) << msg;
  }
  // A number past a double is refused by the JSON reader, naming the file (it escaped as nlohmann's out_of_range).
  EXPECT_NE(parse_error(with_ratios(R"({"turbo": {"512": 1e999}})")).find("/tmp/bad.json: not valid JSON: "), std::string::npos);
  EXPECT_EQ(parse_error(with_ratios(R"({"turbo": {"512": 1.0, "40000": 0.41}, "ssd": {"40000": 0.25}})")), "");
}

TEST(HarnessScenario, OverridesAreCheckedAndApplied) {
  Scenario s = load_scenario(scenario_path("ci-smoke"));
  ScenarioOverrides o;
  o.contexts = std::vector<int64_t>{32};
  o.repetitions = 1;
  o.ctx_size = 256;
  o.configs = std::vector<std::string>{"turbo", "vanilla"};
  apply_overrides(s, o);
  EXPECT_EQ(s.contexts, std::vector<int64_t>{32});
  EXPECT_EQ(s.repetitions, 1);
  ASSERT_EQ(s.configs.size(), 2u);
  EXPECT_EQ(s.configs[0].name, "turbo");
  EXPECT_EQ(s.configs[1].options.ctx_size, 256);
  ScenarioOverrides unknown;
  unknown.configs = std::vector<std::string>{"warp"};
  try {
    apply_overrides(s, unknown);
    FAIL() << "accepted an unknown config";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--configs"), std::string::npos) << e.what();
  }
}

// A temporary results database, removed afterwards.
class HarnessRun : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("lmlab_harness_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

const Sample* find_sample(const std::vector<Sample>& samples, const std::string& config, int64_t context) {
  for (const Sample& s : samples)
    if (s.config == config && s.context_tokens == context && !s.error) return &s;
  return nullptr;
}

TEST_F(HarnessRun, CiSmokeOnCoderMoeRecordsRealSamplesAndOverContextErrors) {
  Scenario s = load_scenario(scenario_path("ci-smoke"));
  ScenarioOverrides o;
  o.model = test::model_dir("coder-moe");
  o.ctx_size = 1024;
  o.contexts = std::vector<int64_t>{64, 512, 2048};  // 2048 > ctx_size: the engine refuses it
  apply_overrides(s, o);
  ResultsStore store = ResultsStore::open((dir_ / "lab.db").string());
  RunSettings settings;
  settings.host = "test-host";
  settings.git_commit = "abc123";
  const RunOutcome out = run_scenario(s, store, settings);

  const int64_t expected = 4 * 3 * s.repetitions;
  EXPECT_EQ(out.samples, expected);
  EXPECT_EQ(out.errors, 4 * s.repetitions);  // every config at 2048
  const auto run = store.run(out.run_id);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->host, "test-host");
  EXPECT_EQ(run->scenario, "ci-smoke");
  EXPECT_EQ(run->model, "coder-moe");
  EXPECT_EQ(run->git_commit, "abc123");
  EXPECT_EQ(run->model_bytes, static_cast<int64_t>(fs::file_size(test::model_dir("coder-moe") / "model.safetensors")));
  const auto config = nlohmann::json::parse(run->engine_config_json);
  EXPECT_EQ(config.at("configs").size(), 4u);
  EXPECT_EQ(config.at("configs")[1].at("options").at("stream_experts"), true);
  EXPECT_EQ(config.at("prompt").at("source"), "random");

  const std::vector<Sample> samples = store.samples(out.run_id);
  ASSERT_EQ(static_cast<int64_t>(samples.size()), expected);
  int probed = 0;
  for (const Sample& x : samples) {
    SCOPED_TRACE(x.config + " @ " + std::to_string(x.context_tokens));
    if (x.context_tokens == 2048) {
      ASSERT_TRUE(x.error.has_value());
      EXPECT_NE(x.error->find("context"), std::string::npos) << *x.error;
      continue;
    }
    ASSERT_FALSE(x.error.has_value()) << *x.error;
    EXPECT_EQ(x.decode_tokens, s.decode_tokens);
    EXPECT_EQ(x.prompt_tokens, x.context_tokens);
    EXPECT_GT(x.prompt_ns, 0);
    EXPECT_GT(x.decode_ns, 0);
    EXPECT_GE(x.ttft_ns, x.prompt_ns);  // prefill + sampling the first token
    EXPECT_GT(x.kv_cache_bytes, 0);
    EXPECT_GT(x.peak_memory_bytes, 0);
    EXPECT_FALSE(x.gpu_memory_bytes.has_value());
    const bool streams = x.config == "ssd" || x.config == "ssd+turbo";
    if (streams) EXPECT_GT(x.ssd_bytes_read, 0);
    else EXPECT_EQ(x.ssd_bytes_read, 0);
    // The drive probed beside every streaming sample that read during decode (a real drive: over 1 MB/s).
    if (streams && x.decode_ssd_bytes_read > 0) {
      EXPECT_GT(x.drive_read_bps, 1e6);
      ++probed;
    } else {
      EXPECT_EQ(x.drive_read_bps, 0.0);
    }
  }
  EXPECT_GT(probed, 0);
  // Same context, same model: TurboQuant's KV is smaller once the context passes its exact window (256).
  for (const auto& [exact, compressed] : {std::pair{"vanilla", "turbo"}, std::pair{"ssd", "ssd+turbo"}}) {
    const Sample* a = find_sample(samples, exact, 512);
    const Sample* b = find_sample(samples, compressed, 512);
    ASSERT_TRUE(a && b);
    EXPECT_LT(b->kv_cache_bytes, a->kv_cache_bytes) << compressed << " vs " << exact;
  }
  // Longer context, more KV.
  EXPECT_LT(find_sample(samples, "vanilla", 64)->kv_cache_bytes, find_sample(samples, "vanilla", 512)->kv_cache_bytes);
}

TEST_F(HarnessRun, SsdOnADenseModelIsRecordedAsAnErrorAndTheRunGoesOn) {
  Scenario s = load_scenario(scenario_path("ci-smoke"));
  ScenarioOverrides o;
  o.model = test::model_dir("coder-dense");
  o.contexts = std::vector<int64_t>{32};
  o.repetitions = 1;
  o.decode_tokens = 2;
  apply_overrides(s, o);
  ResultsStore store = ResultsStore::open((dir_ / "lab.db").string());
  std::ostringstream progress;
  RunSettings settings;
  settings.progress = &progress;
  const RunOutcome out = run_scenario(s, store, settings);
  EXPECT_EQ(out.samples, 4);
  EXPECT_EQ(out.errors, 2);
  for (const Sample& x : store.samples(out.run_id)) {
    const bool streams = x.config == "ssd" || x.config == "ssd+turbo";
    EXPECT_EQ(x.error.has_value(), streams) << x.config;
    if (streams) EXPECT_NE(x.error->find("mixture-of-experts"), std::string::npos) << *x.error;
    else EXPECT_EQ(x.decode_tokens, 2);
  }
  // The skip is visible on the progress stream, not only in the database.
  EXPECT_NE(progress.str().find("config 'ssd' cannot run on coder-dense"), std::string::npos) << progress.str();
}

TEST_F(HarnessRun, TextPromptsFillTheContextExactly) {
  const fs::path text = dir_ / "prompt.py";
  std::ofstream(text) << "def add(a, b):\n    return a + b\n";
  const fs::path file = dir_ / "text.json";
  std::ofstream(file) << R"({"name": "text", "contexts": [100, 37], "repetitions": 1, "decode_tokens": 3,
      "prompt": {"source": "text", "file": "prompt.py"}, "configs": [{"name": "vanilla"}]})";
  Scenario s = load_scenario(file);
  EXPECT_EQ(s.prompt.text_file, text);  // relative to the scenario file
  ScenarioOverrides o;
  o.model = test::model_dir("coder-dense");
  apply_overrides(s, o);
  ResultsStore store = ResultsStore::open((dir_ / "lab.db").string());
  const RunOutcome out = run_scenario(s, store, RunSettings{});
  ASSERT_EQ(out.errors, 0);
  const auto samples = store.samples(out.run_id);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].prompt_tokens, 100);
  EXPECT_EQ(samples[1].prompt_tokens, 37);
}

// The run's engine config records the scenario's reference under "reference", null without one.
TEST_F(HarnessRun, TheRunRecordsTheScenariosReference) {
  const std::string scenario = R"({"name": "t", "contexts": [16], "repetitions": 1, "decode_tokens": 2,
      "configs": [{"name": "vanilla"}, {"name": "turbo"}])";
  const std::string reference = R"(, "reference": {"name": "SwiftLM", "description": "d",
      "decode_ratios": {"turbo": {"16": 0.5}}})";
  ScenarioOverrides o;
  o.model = test::model_dir("coder-dense");
  ResultsStore store = ResultsStore::open((dir_ / "lab.db").string());
  for (const bool with : {true, false}) {
    SCOPED_TRACE(with ? "with a reference" : "without");
    Scenario s = parse_scenario(scenario + (with ? reference : "") + "}", dir_ / "t.json");
    apply_overrides(s, o);
    const RunOutcome out = run_scenario(s, store, RunSettings{});
    const auto recorded = nlohmann::json::parse(store.run(out.run_id)->engine_config_json);
    const nlohmann::json expected = with ? nlohmann::json{{"name", "SwiftLM"}, {"description", "d"}, {"baseline", "vanilla"},
                                                          {"decode_ratios", {{"turbo", {{"16", 0.5}}}}}}
                                         : nlohmann::json(nullptr);
    ASSERT_TRUE(recorded.contains("reference"));
    EXPECT_EQ(recorded["reference"], expected);
  }
}

TEST_F(HarnessRun, MissingModelIsAnErrorBeforeTheRunStarts) {
  const Scenario s = load_scenario(scenario_path("swiftlm"));
  ResultsStore store = ResultsStore::open((dir_ / "lab.db").string());
  try {
    run_scenario(s, store, RunSettings{});
    FAIL() << "ran without a model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'model'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(store.runs().empty());
}

}  // namespace
}  // namespace lmlab
