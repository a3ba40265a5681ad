// Expert streaming through the public Model API (issue 6's "must show"): with --stream-experts and a cache
// of a quarter of the experts, every MoE fixture gives the in-memory run's logits (within 1e-5) and greedy
// tokens; after a streamed generation the engine's SSD byte counter equals the kernel's /proc/self/io
// read_bytes increase within 1%; peak RSS stays within resident weights + cache budget + KV + 64 MB.
// Models are copied to a disk-backed temporary directory (O_DIRECT needs a filesystem that supports it).
#include <gtest/gtest.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "experts/expert_layout.h"
#include "arch/registry.h"
#include "fixtures.h"
#include "generation_reads.h"
#include "golden_checks.h"
#include "model_copy.h"
#include "util/memory_stats.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/safetensors.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

ModelOptions streaming(int64_t cache_mb = 0) {
  ModelOptions o;
  o.stream_experts = true;
  o.expert_cache_mb = cache_mb;  // 0: a quarter of the experts' bytes
  return o;
}

class ExpertStreamModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertStreamModel, LogitsAndGreedyTokensMatchTheInMemoryRun) {
  const std::string name = GetParam();
  test::DiskModelCopy copy(name);
  auto mem = Model::load(copy.dir());
  auto ssd = Model::load(copy.dir(), streaming());
  SafetensorsFile golden(test::golden_path(name));
  const auto prompts = test::golden_prompts(golden);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t>& prompt = prompts[i];
    SCOPED_TRACE(name + " prompt_" + std::to_string(i));
    auto s_mem = mem->new_session();
    auto s_ssd = ssd->new_session();
    auto want = s_mem->append(prompt, true);
    std::vector<float> want_copy(want.begin(), want.end());
    auto got = s_ssd->append(prompt, true);
    ASSERT_EQ(got.size(), want_copy.size());
    double worst = 0;
    for (size_t j = 0; j < got.size(); ++j) worst = std::max(worst, std::fabs(static_cast<double>(got[j]) - want_copy[j]));
    EXPECT_LE(worst, 1e-5);
    SamplingParams sp;
    sp.max_tokens = 24;
    sp.stop_at_eos = false;
    auto g_mem = mem->new_session();
    auto g_ssd = ssd->new_session();
    EXPECT_EQ(generate(*g_ssd, prompt, sp).tokens, generate(*g_mem, prompt, sp).tokens);
  }
  EXPECT_GT(prompts.size(), 0u);
  const ModelCounters c = ssd->counters();
  EXPECT_GT(c.stream.ssd_bytes_read_total, 0u);
  EXPECT_GT(c.stream.expert_cache_misses_total, 0u);
  EXPECT_GT(c.stream.expert_cache_hits_total, 0u);
  EXPECT_EQ(mem->counters().stream.ssd_bytes_read_total, 0u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExpertStreamModel,
                         ::testing::Values("coder-moe", "coder-moe-sparse-4bit", "qwen3_moe", "mixtral",
                                           "qwen3_moe-4bit"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

TEST(ExpertStreamModelCounters, SsdBytesEqualTheKernelsCountAfterAGeneration) {
  if (!process_read_bytes()) GTEST_SKIP() << "/proc/self/io is not available (no task I/O accounting)";
  test::DiskModelCopy copy("coder-moe-sparse-4bit");
  { auto warm = Model::load(copy.dir()); }  // config, tokenizer and weights in the page cache: only O_DIRECT reads count
  SafetensorsFile golden(test::golden_path("coder-moe-sparse-4bit"));
  auto prompt = test::golden_tensor<int32_t>(golden, "prompt_0");
  const test::GenerationReads r = test::generate_and_count_reads(copy.dir(), streaming(), prompt, 32);
  EXPECT_GT(r.counters.stream.ssd_reads_total, 0u);
  test::expect_ssd_bytes_match_the_kernel(r, copy.dir());
}

TEST(ExpertStreamModelMemory, PeakRssWithinResidentWeightsCacheAndKv) {
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // resets VmHWM to the current RSS
  }
  const uint64_t rss0 = process_rss_bytes(), hwm0 = process_peak_rss_bytes();
  if (hwm0 > rss0 + (1 << 20)) GTEST_SKIP() << "cannot reset the peak RSS (/proc/self/clear_refs)";
  test::DiskModelCopy copy("coder-moe-sparse-4bit");
  const ModelSpec spec = load_model_spec(copy.dir().string());
  const WeightStore store = WeightStore::open_dir(copy.dir());
  const ExpertLayout layout = ExpertLayout::build(store, spec);
  const uint64_t resident = store.total_bytes() - layout.total_tensor_bytes();
  const uint64_t budget = layout.total_read_bytes() / 4;  // the default: a quarter of the experts' buffers
  SafetensorsFile golden(test::golden_path("coder-moe-sparse-4bit"));
  auto prompt = test::golden_tensor<int32_t>(golden, "prompt_0");
  auto ssd = Model::load(copy.dir(), streaming());
  auto s = ssd->new_session();
  SamplingParams sp;
  sp.max_tokens = 48;
  sp.stop_at_eos = false;
  generate(*s, prompt, sp);
  const uint64_t held = ssd->counters().stream.expert_cache_bytes;
  const uint64_t peak = process_peak_rss_bytes();
  const uint64_t bound = rss0 + resident + budget + s->kv_bytes() + (64ull << 20);
  EXPECT_GT(held, 0u);
  EXPECT_LE(held, budget);
  EXPECT_LE(peak, bound) << "peak " << peak << " over start " << rss0 << " + resident " << resident << " + cache "
                         << budget << " + kv " << s->kv_bytes() << " + 64 MB";
  std::cout << "[ MEMORY   ] peak RSS " << (peak - rss0) / 1e6 << " MB over the start; bound " << (bound - rss0) / 1e6
            << " MB (resident weights " << resident / 1e6 << ", cache " << budget / 1e6 << ", KV " << s->kv_bytes() / 1e6
            << ")\n";
}

}  // namespace
}  // namespace lmlab
