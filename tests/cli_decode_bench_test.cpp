// lmlab decode-bench as a process: the warm-up stays out of the timed window, and with --stream-experts the
// decode's streaming counters cover exactly the timed steps (a decode step asks each MoE layer for top_k
// distinct experts, so hits + misses = steps x MoE layers x top_k, whatever the warm-up did); --decode-tokens
// random feeds a synth's MoE the varied inputs text would, where its greedy decode repeats itself.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

std::string run_lmlab(const std::string& args) {
  const std::string cmd = std::string(LMLAB_CLI_PATH) + " " + args + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  EXPECT_EQ(::pclose(p), 0) << cmd << "\n" << out;
  return out;
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST(CliDecodeBench, StreamingCountersCoverExactlyTheTimedDecodeSteps) {
  const auto dir = lmlab::test::model_dir("coder-moe");
  std::ifstream cfg(dir / "config.json");
  const nlohmann::json c = nlohmann::json::parse(cfg);
  const int64_t layers = c.at("num_hidden_layers"), top_k = c.at("num_experts_per_tok");
  ASSERT_EQ(c.value("decoder_sparse_step", 1), 1);  // every layer is a MoE layer
  for (const char* warmup : {"0", "3"}) {
    const std::string out = run_lmlab("decode-bench --model " + dir.string() +
                                      " --contexts 12,20 -n 5 --threads 1 --stream-experts --expert-cache-mb 1 "
                                      "--warmup " + std::string(warmup) + " --json");
    const std::vector<nlohmann::json> rows = json_lines(out);
    ASSERT_EQ(rows.size(), 2u) << out;
    for (const nlohmann::json& r : rows) {
      ASSERT_TRUE(r.contains("decode_streaming")) << r.dump();
      const nlohmann::json& s = r["decode_streaming"];
      EXPECT_EQ(s["expert_cache_hits"].get<int64_t>() + s["expert_cache_misses"].get<int64_t>(), 5 * layers * top_k)
          << "warm-up " << warmup << ": " << s.dump();
      // A one-expert cache misses during decode, and every miss is read from the shard files.
      EXPECT_GT(s["expert_cache_misses"].get<int64_t>(), 0) << s.dump();
      EXPECT_GT(s["ssd_bytes"].get<int64_t>(), 0) << s.dump();
      EXPECT_GT(s["ssd_read_seconds"].get<double>(), 0.0) << "the time reads were in flight: " << s.dump();
      EXPECT_GT(r["decode_tok_s"].get<double>(), 0.0);
    }
  }
  // Without streaming the row carries no streaming object.
  const std::vector<nlohmann::json> plain =
      json_lines(run_lmlab("decode-bench --model " + dir.string() + " --contexts 8 -n 2 --threads 1 --json"));
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_FALSE(plain[0].contains("decode_streaming"));
}

// A random-weight MoE's greedy decode soon feeds back one token, so its routing repeats and a small expert cache hits
// (the synth streaming figures of docs/cuda.md were taken so); random inputs route as varied text does and miss.
TEST(CliDecodeBench, RandomDecodeInputsMissTheExpertCacheWhereGreedyRepeatsItself) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("lmlab_decode_inputs_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  run_lmlab("synth --arch qwen3_moe --experts 32 --top-k 2 --layers 4 --bits 4 --seed 3 --quiet --out " + dir.string() +
            " --tokenizer-from " + lmlab::test::model_dir("qwen3_moe").string());
  auto misses = [&](const char* inputs) {
    const std::vector<nlohmann::json> rows = json_lines(
        run_lmlab("decode-bench --model " + dir.string() + " --contexts 16 -n 32 --threads 1 --stream-experts " +
                  "--expert-cache-mb 1 --no-expert-predict --decode-tokens " + inputs + " --json"));
    EXPECT_EQ(rows.size(), 1u);
    if (rows.empty()) return int64_t{-1};
    EXPECT_EQ(rows[0]["decode_inputs"], inputs);
    return rows[0]["decode_streaming"]["expert_cache_misses"].get<int64_t>();
  };
  const int64_t greedy = misses("greedy"), random = misses("random");
  std::filesystem::remove_all(dir);
  // (seeded and single-threaded, so the counts are fixed: 78 and 155 when written)
  EXPECT_GT(2 * random, 3 * greedy) << "greedy " << greedy << ", random " << random;
  // An unknown kind is refused, naming the flag.
  const std::string cmd = std::string(LMLAB_CLI_PATH) + " decode-bench --model x --decode-tokens sampled 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::array<char, 4096> buf{};
  std::string out;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  EXPECT_NE(::pclose(p), 0);
  EXPECT_NE(out.find("--decode-tokens"), std::string::npos) << out;
}

}  // namespace
