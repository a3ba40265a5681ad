// The regression gate's decisions on constructed runs (results' compare_runs): what passes, what regresses and
// what cannot be compared; the baseline file's round trip and its reader's refusals (fuzzed in
// fuzz/gate_baseline_fuzz_test.cpp). The gate on real engine runs
// (A/A, an injected slowdown) is in gate_cli_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "lmlab/gate.h"
#include "lmlab/gate_report.h"
#include "lmlab/harness.h"

namespace lmlab {
namespace {

constexpr int kReps = 8;

// A run of configs x contexts x kReps samples; decode tok/s = tok_s x (1 + 1% x rep), every other metric exact.
GateRun make_run(double tok_s, std::vector<std::string> configs = {"vanilla", "turbo"}, std::vector<int64_t> contexts = {256}) {
  GateRun r;
  r.info.id = 1;
  r.info.scenario = "ci-gate";
  r.info.model = "coder-moe";
  r.info.model_bytes = 1000;
  r.info.host_fingerprint = "cpu=test; cpus=2; mem=24GiB";
  r.info.engine_config_json =
      nlohmann::json{{"contexts", contexts}, {"repetitions", kReps}, {"decode_tokens", 32}}.dump();
  for (const std::string& c : configs) {
    for (int64_t ctx : contexts) {
      for (int rep = 0; rep < kReps; ++rep) {
        Sample s;
        s.config = c;
        s.context_tokens = ctx;
        s.repetition = rep;
        s.decode_tokens = 32;
        s.decode_ns = std::llround(32 / (tok_s * (c == "turbo" ? 0.8 : 1.0) * (1 + 0.01 * rep)) * 1e9);
        s.kv_cache_bytes = (c == "turbo" ? 300 : 1000) * (ctx + 32);
        s.peak_memory_bytes = 50 << 20;
        s.output_tokens = {5, 6, 7, 8};
        r.samples.push_back(s);
      }
    }
    r.evaluations.push_back(Evaluation{c, 255, 255 * 1.5, std::nullopt});
  }
  return r;
}

GatePolicy policy() {
  GatePolicy p;
  p.ratios = {{"turbo", "vanilla"}};
  return p;
}

const GateRow* find_row(const GateReport& rep, const std::string& metric, const std::string& config) {
  for (const GateRow& r : rep.rows)
    if (r.metric == metric && r.config == config) return &r;
  return nullptr;
}

TEST(Gate, AACompareOfEqualRunsPassesWithEveryMetricCompared) {
  const GateReport rep = compare_runs(make_run(100), make_run(100), policy());
  EXPECT_EQ(rep.status, GateReport::Status::pass) << render_gate_markdown(rep);
  EXPECT_EQ(gate_exit_code(rep), 0);
  for (const char* metric : {"decode tok/s", "KV bytes/token", "peak memory bytes", "greedy tokens differing", "perplexity"})
    EXPECT_NE(find_row(rep, metric, "turbo"), nullptr) << metric;
  ASSERT_NE(find_row(rep, "decode tok/s ratio", "turbo/vanilla"), nullptr);
  EXPECT_NEAR(find_row(rep, "decode tok/s ratio", "turbo/vanilla")->candidate, 0.8, 1e-6);
}

TEST(Gate, TwentyPercentSlowerDecodeIsARegressionNamingMetricConfigContextChangeAndP) {
  const GateReport rep = compare_runs(make_run(100), make_run(80), policy());
  EXPECT_EQ(gate_exit_code(rep), 1);
  const GateRow* row = find_row(rep, "decode tok/s", "vanilla");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->verdict, GateVerdict::regression);
  EXPECT_NEAR(row->change, -0.2, 1e-3);
  ASSERT_TRUE(row->p_value.has_value());
  EXPECT_LT(*row->p_value, 0.01);
  const std::string md = render_gate_markdown(rep);
  EXPECT_NE(md.find("decode tok/s of vanilla at context 256: 103.5 -> 82.8 (-20.0%"), std::string::npos) << md;
  EXPECT_NE(md.find("p = 0.0"), std::string::npos) << md;
  // The ratio between configs did not move: a uniform slowdown is only visible in absolute times.
  EXPECT_EQ(find_row(rep, "decode tok/s ratio", "turbo/vanilla")->verdict, GateVerdict::ok);
  const auto j = nlohmann::json::parse(render_gate_json(rep));
  EXPECT_EQ(j["status"], "regression");
  EXPECT_EQ(j["exit_code"], 1);
}

TEST(Gate, NoiseFloorFromTheBaselinesSpreadAbsorbsAChangeWithinIt) {
  GateRun base = make_run(100), cand = make_run(85);
  for (Sample& s : base.samples) s.decode_ns = s.decode_ns * (s.repetition % 2 ? 13 : 10) / 10;  // IQR ~ 25%
  const GateReport rep = compare_runs(base, cand, policy());
  const GateRow* row = find_row(rep, "decode tok/s", "vanilla");
  ASSERT_NE(row, nullptr);
  EXPECT_GT(row->threshold, 0.3);
  EXPECT_EQ(row->verdict, GateVerdict::ok);
}

TEST(Gate, KvBytesChangeFailsEitherWay) {
  for (int64_t delta : {+64, -64}) {
    GateRun cand = make_run(100);
    for (Sample& s : cand.samples)
      if (s.config == "turbo") s.kv_cache_bytes += delta;
    const GateReport rep = compare_runs(make_run(100), cand, policy());
    EXPECT_EQ(gate_exit_code(rep), 1) << delta;
    EXPECT_EQ(find_row(rep, "KV bytes/token", "turbo")->verdict, GateVerdict::regression);
    EXPECT_EQ(find_row(rep, "KV bytes/token", "vanilla")->verdict, GateVerdict::ok);
  }
}

TEST(Gate, GreedyTokensAndPerplexityChangesFail) {
  GateRun cand = make_run(100);
  cand.samples[3].output_tokens[2] = 99;
  GateReport rep = compare_runs(make_run(100), cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 1);
  const GateRow* row = find_row(rep, "greedy tokens differing", "vanilla");
  EXPECT_EQ(row->verdict, GateVerdict::regression);
  EXPECT_NE(row->note.find("repetition 3 first differs at token 2 of 4"), std::string::npos) << row->note;

  cand = make_run(100);
  cand.evaluations[1].nll_sum *= 1.01;
  rep = compare_runs(make_run(100), cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 1);
  EXPECT_EQ(find_row(rep, "perplexity", "turbo")->verdict, GateVerdict::regression);
}

// Greedy tokens compare only where the CPU kernels are the same ISA (the fingerprint's "isa="): another ISA sums in
// another order, and TurboQuant's near ties may go either way. Runs recorded before the field compare among
// themselves as before.
TEST(Gate, GreedyTokensCompareOnlyUnderTheSameCpuKernels) {
  GateRun base = make_run(100), cand = make_run(100);
  cand.samples[3].output_tokens[2] = 99;
  base.info.host_fingerprint = "cpu=test; isa=avx512; cpus=2; mem=24GiB";
  cand.info.host_fingerprint = "cpu=test; isa=avx2; cpus=2; mem=24GiB";
  GateReport rep = compare_runs(base, cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 0) << render_gate_markdown(rep);
  const GateRow* row = find_row(rep, "greedy tokens differing", "vanilla");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->verdict, GateVerdict::skipped);
  EXPECT_NE(row->note.find("the CPU kernels differ (avx512 vs avx2)"), std::string::npos) << row->note;
  EXPECT_EQ(find_row(rep, "decode tok/s", "vanilla"), nullptr) << "another fingerprint: no absolute times";

  cand.info.host_fingerprint = base.info.host_fingerprint;  // the same kernels: the change fails
  rep = compare_runs(base, cand, policy());
  EXPECT_EQ(find_row(rep, "greedy tokens differing", "vanilla")->verdict, GateVerdict::regression);

  base.info.host_fingerprint = "cpu=test; cpus=2; mem=24GiB";  // a baseline from before the field
  rep = compare_runs(base, cand, policy());
  EXPECT_EQ(find_row(rep, "greedy tokens differing", "vanilla")->verdict, GateVerdict::skipped);
  EXPECT_NE(find_row(rep, "greedy tokens differing", "vanilla")->note.find("the baseline does not name its CPU kernels' ISA"),
            std::string::npos);
}

TEST(Gate, DifferentModelsOrScenariosCannotCompare) {
  GateRun other = make_run(100);
  other.info.model = "coder-dense";
  GateReport rep = compare_runs(make_run(100), other, policy());
  EXPECT_EQ(gate_exit_code(rep), 2);
  ASSERT_FALSE(rep.cannot_compare.empty());
  EXPECT_NE(rep.cannot_compare[0].find("different models: baseline coder-moe"), std::string::npos);
  EXPECT_TRUE(rep.rows.empty());
  EXPECT_NE(render_gate_markdown(rep).find("CANNOT COMPARE"), std::string::npos);

  other = make_run(100);
  other.info.engine_config_json = nlohmann::json{{"contexts", {256}}, {"repetitions", kReps}, {"decode_tokens", 64}}.dump();
  rep = compare_runs(make_run(100), other, policy());
  EXPECT_EQ(gate_exit_code(rep), 2);
  EXPECT_NE(rep.cannot_compare.at(0).find("'decode_tokens' differs"), std::string::npos) << rep.cannot_compare[0];
}

// A run whose one config, vanilla, was recorded with these engine options.
GateRun run_with_options(const nlohmann::json& options) {
  GateRun r = make_run(100);
  r.info.engine_config_json = nlohmann::json{{"contexts", {256}}, {"repetitions", kReps}, {"decode_tokens", 32},
                                             {"configs", {{{"name", "vanilla"}, {"options", options}}}}}
                                  .dump();
  return r;
}

// A baseline recorded before an option existed compares with a candidate that has it at its default; a config
// whose option differs from the baseline's still cannot compare.
TEST(Gate, AnOptionAddedAtItsDefaultStillCompares) {
  const auto& with_configs = run_with_options;
  const GateRun old_baseline = with_configs({{"kv_mode", "f32"}, {"threads", 1}});
  GateReport rep = compare_runs(old_baseline, with_configs({{"kv_mode", "f32"}, {"threads", 1}, {"gpu_layers", 0}}),
                                policy());
  EXPECT_TRUE(rep.cannot_compare.empty()) << rep.cannot_compare.at(0);
  rep = compare_runs(old_baseline, with_configs({{"kv_mode", "f32"}, {"threads", 1}, {"gpu_layers", 4}}), policy());
  ASSERT_FALSE(rep.cannot_compare.empty());
  EXPECT_NE(rep.cannot_compare[0].find("'configs' differs"), std::string::npos) << rep.cannot_compare[0];
  rep = compare_runs(old_baseline, with_configs({{"kv_mode", "turbo"}, {"threads", 1}}), policy());
  EXPECT_FALSE(rep.cannot_compare.empty()) << "a changed option is still a different measurement";
}

// --prefill-size's default became 0 (what it means depends on the device): a CPU baseline recorded at 512, the old
// default, compares with a CPU candidate at 0; on a GPU, where 0 means 2048, it does not.
TEST(Gate, ADeviceDependentDefaultComparesAsWhatItMeans) {
  const auto& with_options = run_with_options;
  GateReport rep = compare_runs(with_options({{"device", "cpu"}, {"prefill_size", 512}}),
                                with_options({{"device", "cpu"}, {"prefill_size", 0}}), policy());
  EXPECT_TRUE(rep.cannot_compare.empty()) << rep.cannot_compare.at(0);
  rep = compare_runs(with_options({{"device", "cuda"}, {"prefill_size", 512}}),
                     with_options({{"device", "cuda"}, {"prefill_size", 0}}), policy());
  ASSERT_FALSE(rep.cannot_compare.empty()) << "512 against 2048 tokens a chunk";
  EXPECT_NE(rep.cannot_compare[0].find("'configs' differs"), std::string::npos) << rep.cannot_compare[0];
  rep = compare_runs(with_options({{"device", "cuda"}, {"prefill_size", 2048}}),
                     with_options({{"device", "cuda"}, {"prefill_size", 0}}), policy());
  EXPECT_TRUE(rep.cannot_compare.empty()) << rep.cannot_compare.at(0);
}

// The scenario's published "reference" (set beside the report's decode ratios) is no measurement setting: a
// baseline recorded before scenarios carried one compares with a candidate that records one, and two references
// that differ compare too.
TEST(Gate, APublishedReferenceIsNotAMeasurementSetting) {
  GateRun base = make_run(100), cand = make_run(100);
  nlohmann::json config = nlohmann::json::parse(cand.info.engine_config_json);
  config["reference"] = {{"name", "SwiftLM"}, {"description", "d"}, {"baseline", "vanilla"},
                         {"decode_ratios", {{"turbo", {{"256", 0.41}}}}}};
  cand.info.engine_config_json = config.dump();
  GateReport rep = compare_runs(base, cand, policy());
  EXPECT_TRUE(rep.cannot_compare.empty()) << rep.cannot_compare.at(0);
  EXPECT_EQ(gate_exit_code(rep), 0) << render_gate_markdown(rep);
  config["reference"]["decode_ratios"]["turbo"]["256"] = 0.9;
  base.info.engine_config_json = config.dump();
  rep = compare_runs(base, cand, policy());
  EXPECT_TRUE(rep.cannot_compare.empty()) << rep.cannot_compare.at(0);
  EXPECT_EQ(gate_exit_code(rep), 0) << render_gate_markdown(rep);
}

TEST(Gate, IncompleteRunsCannotCompare) {
  GateRun cand = make_run(100);
  cand.samples.pop_back();  // interrupted: the last sample never ran
  GateReport rep = compare_runs(make_run(100), cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 2);
  EXPECT_NE(rep.cannot_compare.at(0).find("candidate run 1 is incomplete: turbo at context 256 has 7 of 8 samples"),
            std::string::npos) << rep.cannot_compare[0];

  cand = make_run(100);
  cand.samples[0].error = "out of memory";
  rep = compare_runs(make_run(100), cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 2);
  EXPECT_NE(rep.cannot_compare.at(0).find("1 samples failed (first: vanilla at context 256: out of memory)"),
            std::string::npos);

  cand = make_run(100);
  cand.evaluations.pop_back();
  EXPECT_EQ(gate_exit_code(compare_runs(make_run(100), cand, policy())), 2);
  EXPECT_EQ(gate_exit_code(compare_runs(make_run(100), GateRun{}, policy())), 2);
}

TEST(Gate, AbsoluteTimesOnlyOnTheSameHostFingerprint) {
  GateRun cand = make_run(50);  // half the speed, on another machine
  cand.info.host_fingerprint = "cpu=other; cpus=8; mem=64GiB";
  GateReport rep = compare_runs(make_run(100), cand, policy());
  EXPECT_EQ(gate_exit_code(rep), 0) << render_gate_markdown(rep);
  EXPECT_EQ(find_row(rep, "decode tok/s", "vanilla"), nullptr);
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("absolute times not compared: host fingerprints differ"), std::string::npos);
  GatePolicy strict = policy();
  strict.require_same_host = true;
  EXPECT_EQ(gate_exit_code(compare_runs(make_run(100), cand, strict)), 2);
}

// A run with a streaming config "ssd" beside "vanilla": each ssd sample reads `bytes` during decode, on a drive of
// `drive_bps`, and takes vanilla's time plus `stall` x the drive's time for those bytes.
GateRun make_streaming_run(double drive_bps, double stall) {
  GateRun r = make_run(100, {"vanilla", "ssd"});
  constexpr int64_t bytes = int64_t{1} << 30;
  std::map<int64_t, int64_t> vanilla_ns;
  for (const Sample& s : r.samples)
    if (s.config == "vanilla") vanilla_ns[s.repetition] = s.decode_ns;
  for (Sample& s : r.samples) {
    if (s.config != "ssd") continue;
    s.decode_ssd_bytes_read = bytes;
    s.drive_read_bps = drive_bps * (1 + 0.002 * s.repetition);
    s.decode_ns = vanilla_ns[s.repetition] + std::llround(stall * (1 + 0.01 * s.repetition) * bytes / drive_bps * 1e9);
  }
  return r;
}

GatePolicy streaming_policy() {
  GatePolicy p;
  p.ratios = {{"ssd", "vanilla"}};
  p.ssd_stalls = {{"ssd", "vanilla"}};
  return p;
}

TEST(GateSsdStall, ASlowerDriveIsNotARegressionButAWorseStreamerIs) {
  const GateRun base = make_streaming_run(2.5e9, 0.8);
  // The same streamer on a drive at 40% of the speed: decode much slower, the plain ratio regresses, the stall
  // per drive time does not move, and absolute decode tok/s is not compared across the two drives.
  GateReport rep = compare_runs(base, make_streaming_run(1.0e9, 0.8), streaming_policy());
  const GateRow* stall = find_row(rep, "SSD stall / drive time", "ssd/vanilla");
  ASSERT_NE(stall, nullptr) << render_gate_markdown(rep);
  EXPECT_NEAR(stall->baseline, 0.8 * 1.035, 0.01);
  EXPECT_EQ(stall->verdict, GateVerdict::ok);
  EXPECT_NEAR(stall->change, 0.0, 0.01);
  EXPECT_EQ(find_row(rep, "decode tok/s ratio", "ssd/vanilla")->verdict, GateVerdict::regression);
  const GateRow* absolute = find_row(rep, "decode tok/s", "ssd");
  ASSERT_NE(absolute, nullptr);
  EXPECT_EQ(absolute->verdict, GateVerdict::skipped);
  EXPECT_NE(absolute->note.find("the drives differ (random reads 2518 vs 1007 MB/s)"), std::string::npos) << absolute->note;
  EXPECT_EQ(find_row(rep, "decode tok/s", "vanilla")->verdict, GateVerdict::ok);

  GatePolicy stall_only = streaming_policy();
  stall_only.ratios.clear();
  EXPECT_EQ(gate_exit_code(compare_runs(base, make_streaming_run(1.0e9, 0.8), stall_only)), 0);
  // The same drive, a streamer that stalls 50% longer per byte: a regression.
  rep = compare_runs(base, make_streaming_run(2.5e9, 1.2), stall_only);
  EXPECT_EQ(gate_exit_code(rep), 1);
  EXPECT_EQ(find_row(rep, "SSD stall / drive time", "ssd/vanilla")->verdict, GateVerdict::regression);
  EXPECT_NE(render_gate_markdown(rep).find("SSD stall / drive time of ssd/vanilla at context 256: 0.834 -> 1.251"),
            std::string::npos) << render_gate_markdown(rep);
}

TEST(GateSsdStall, ABaselineWithoutDriveProbesIsSkippedNotCompared) {
  GateRun base = make_streaming_run(2.5e9, 0.8);
  for (Sample& s : base.samples) s.drive_read_bps = 0;  // recorded before the probe existed
  const GateReport rep = compare_runs(base, make_streaming_run(2.5e9, 0.8), streaming_policy());
  const GateRow* stall = find_row(rep, "SSD stall / drive time", "ssd/vanilla");
  ASSERT_NE(stall, nullptr);
  EXPECT_EQ(stall->verdict, GateVerdict::skipped);
  EXPECT_EQ(find_row(rep, "decode tok/s", "ssd")->verdict, GateVerdict::ok);  // one side unprobed: compared
}

TEST(GateBaselineFile, RoundTripsEveryField) {
  GateRun run = make_run(100);
  run.samples[1].error = "boom";
  run.samples[2].decode_ssd_bytes_read = 12345;
  run.samples[2].drive_read_bps = 2.5e9 + 0.125;
  const GateRun back = gate_run_from_json(gate_run_to_json(run), "b.json");
  EXPECT_EQ(back.info.host_fingerprint, run.info.host_fingerprint);
  EXPECT_EQ(nlohmann::json::parse(back.info.engine_config_json), nlohmann::json::parse(run.info.engine_config_json));
  ASSERT_EQ(back.samples.size(), run.samples.size());
  EXPECT_EQ(back.samples[1].error, run.samples[1].error);
  EXPECT_EQ(back.samples[2].decode_ssd_bytes_read, 12345);
  EXPECT_EQ(back.samples[2].drive_read_bps, 2.5e9 + 0.125);
  EXPECT_EQ(back.samples[3].drive_read_bps, 0.0);
  EXPECT_EQ(back.samples[5].decode_ns, run.samples[5].decode_ns);
  EXPECT_EQ(back.samples[5].output_tokens, run.samples[5].output_tokens);
  ASSERT_EQ(back.evaluations.size(), 2u);
  EXPECT_EQ(back.evaluations[1].nll_sum, run.evaluations[1].nll_sum);  // exact: doubles round-trip
  EXPECT_EQ(gate_exit_code(compare_runs(back, make_run(100), policy())), 2);  // the failed sample
}

TEST(GateBaselineFile, RefusesBadFilesNamingTheField) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      gate_run_from_json(text, "b.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "parsed";
  };
  EXPECT_NE(error_of("{").find("gate baseline b.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[]").find("must be an object"), std::string::npos);
  EXPECT_NE(error_of(R"({"lmlab_gate_baseline": 2})").find("format version 2"), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(gate_run_to_json(make_run(100)));
  j["samples"][3]["decode_ns"] = "fast";
  EXPECT_NE(error_of(j.dump()).find("field 'samples[3].decode_ns': must be an integer"), std::string::npos);
  j = nlohmann::json::parse(gate_run_to_json(make_run(100)));
  j["samples"][0]["output_tokens"][1] = -4;
  EXPECT_NE(error_of(j.dump()).find("samples[0].output_tokens[1]"), std::string::npos);
  j = nlohmann::json::parse(gate_run_to_json(make_run(100)));
  j["samples"][2]["drive_read_bps"] = -1;
  EXPECT_NE(error_of(j.dump()).find("samples[2].drive_read_bps"), std::string::npos);
  j = nlohmann::json::parse(gate_run_to_json(make_run(100)));
  j["run"].erase("model");
  EXPECT_NE(error_of(j.dump()).find("field 'run.model': missing"), std::string::npos);
  EXPECT_NE(error_of(std::string(kMaxGateBaselineBytes + 1, ' ')).find("over the"), std::string::npos);
}

// The scenario's "gate" object, "interleave" and "perplexity_tokens": read whole, every mistake named by field.
TEST(GateScenario, ReadsThresholdsAndRefusesMistakesNamingTheField) {
  auto scenario = [](const std::string& extra) {
    return R"({"name": "g", "contexts": [64], "configs": [{"name": "vanilla"}, {"name": "turbo"}])" + extra + "}";
  };
  const Scenario s = parse_scenario(scenario(R"(, "interleave": true, "perplexity_tokens": 128, "gate": {"alpha": 0.05,
      "noise_k": 1.5, "thresholds": {"decode_tok_s": 0.2, "kv_bytes_per_token": 0, "ssd_stall": 0.3},
      "ratios": [["turbo", "vanilla"]], "ssd_stall": [["turbo", "vanilla"]], "require_same_host": true})"), "g.json");
  EXPECT_TRUE(s.interleave);
  EXPECT_EQ(s.perplexity_tokens, 128);
  EXPECT_EQ(s.gate.alpha, 0.05);
  EXPECT_EQ(s.gate.noise_k, 1.5);
  EXPECT_EQ(s.gate.decode_tok_s, 0.2);
  EXPECT_EQ(s.gate.decode_ratio, GatePolicy{}.decode_ratio);  // unset: the default
  ASSERT_EQ(s.gate.ratios.size(), 1u);
  EXPECT_EQ(s.gate.ratios[0].numerator, "turbo");
  ASSERT_EQ(s.gate.ssd_stalls.size(), 1u);
  EXPECT_EQ(s.gate.ssd_stalls[0].streamed, "turbo");
  EXPECT_EQ(s.gate.ssd_stalls[0].reference, "vanilla");
  EXPECT_EQ(s.gate.ssd_stall, 0.3);
  EXPECT_TRUE(s.gate.require_same_host);

  auto error_of = [&](const std::string& extra) -> std::string {
    try {
      parse_scenario(scenario(extra), "g.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "parsed";
  };
  EXPECT_NE(error_of(R"(, "gate": {"thresholds": {"decode_toks": 0.1}})").find("field 'gate.thresholds.decode_toks': unknown key"),
            std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"thresholds": {"perplexity": -1}})").find("gate.thresholds.perplexity"), std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"alpha": "0.05"})").find("field 'gate.alpha': must be a number"), std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"ratios": [["ssd", "vanilla"]]})").find("'ssd' is not a config of this scenario"),
            std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"ratios": [["turbo"]]})").find("field 'gate.ratios[0]'"), std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"ssd_stall": [["ssd", "vanilla"]]})").find("'ssd' is not a config of this scenario"),
            std::string::npos);
  EXPECT_NE(error_of(R"(, "gate": {"ssd_stall": {}})").find("field 'gate.ssd_stall': must be an array"), std::string::npos);
  EXPECT_NE(error_of(R"(, "interleave": 1)").find("field 'interleave': must be true or false"), std::string::npos);
  EXPECT_NE(error_of(R"(, "perplexity_tokens": 0)").find("field 'perplexity_tokens'"), std::string::npos);
  EXPECT_NE(error_of(R"(, "options": {"debug_token_delay_us": -5})").find("options.debug_token_delay_us"), std::string::npos);
}

}  // namespace
}  // namespace lmlab
