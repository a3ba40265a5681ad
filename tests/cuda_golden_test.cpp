// The golden suite on the GPU: every fixture model with --device cuda against HF transformers' logits and
// greedy tokens (the same checks and bounds as the CPU's golden_test), plus the --gpu-layers split (first
// layer on the GPU, the rest on the CPU) and the engine's device-memory books against the driver. Without a
// GPU every test skips with the reason. Also: the device's busy time in replayed decode steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#ifdef LMLAB_HAVE_CUDA
#include "cuda/kernels/kernels_cuda.h"
#endif
#include "model/backend_factory.h"
#include "golden_checks.h"
#include "model/model_impl.h"

namespace lmlab {
namespace {

ModelOptions cuda_options(int64_t gpu_layers = 0) {
  ModelOptions o;
  o.device = Device::cuda;
  o.gpu_layers = gpu_layers;
  o.ctx_size = 4096;
  return o;
}

class CudaGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = device_unavailable_reason(Device::cuda); !why.empty())
      GTEST_SKIP() << "CUDA golden suite not run: " << why;
  }
};

TEST_P(CudaGolden, LogitsAndGreedyMatchTransformers) {
  auto model = Model::load(test::model_dir(GetParam()), cuda_options());
  ASSERT_EQ(model->impl().backend->device(), Device::cuda);
  ASSERT_EQ(model->impl().backend->device_layers(), model->info().n_layers);
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

INSTANTIATE_TEST_SUITE_P(All, CudaGolden,
                         ::testing::Values("llama", "qwen3", "qwen3_moe", "mixtral", "gemma3", "coder-dense",
                                           "coder-moe", "llama-4bit", "qwen3_moe-4bit", "coder-moe-sparse-4bit"),
                         test::param_name);

class CudaSplit : public CudaGolden {};

// --gpu-layers 1: layer 0 on the GPU (device KV), the others and the head on the CPU.
TEST_P(CudaSplit, FirstLayerOnTheGpuRestOnTheCpu) {
  auto model = Model::load(test::model_dir(GetParam()), cuda_options(1));
  ASSERT_EQ(model->impl().backend->device_layers(), 1);
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Some, CudaSplit, ::testing::Values("gemma3", "coder-moe"), test::param_name);

// Chained launches (cuda/kernels/chained_launch.cuh) let each decode kernel start while the one before it finishes;
// a kernel that touched an activation before its chain_wait() would read or clobber it early. Greedy decode through
// the captured graph, with and without chaining: every step's logits the same bits, on a dense model, a MoE (gathered
// GEMVs read the routed experts) and gemma3 (sliding windows, softcaps).
class CudaChained : public CudaGolden {};

#ifdef LMLAB_HAVE_CUDA
std::vector<std::vector<float>> greedy_decode_logits(const std::string& name, bool chained) {
  kernels::cuda::set_chained_launches(chained);
  auto model = Model::load(test::model_dir(name), cuda_options());
  auto session = model->new_session();
  std::vector<int32_t> prompt(37);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 11) % 1000);
  std::span<const float> logits = session->append(prompt);
  std::vector<std::vector<float>> steps;
  for (int step = 0; step < 40; ++step) {
    steps.emplace_back(logits.begin(), logits.end());
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    logits = session->append(std::vector<int32_t>{next});
  }
  return steps;
}
#endif

TEST_P(CudaChained, DecodeLogitsEqualPlainLaunchesBitForBit) {
#ifdef LMLAB_HAVE_CUDA
  const bool was = kernels::cuda::chained_launches();
  if (!was) GTEST_SKIP() << "chained launches need sm_90+ (and LMLAB_CUDA_CHAINED not 0)";
  const auto chained = greedy_decode_logits(GetParam(), true);
  const auto plain = greedy_decode_logits(GetParam(), false);
  kernels::cuda::set_chained_launches(was);
  ASSERT_EQ(chained.size(), plain.size());
  for (size_t step = 0; step < chained.size(); ++step) {
    ASSERT_EQ(chained[step].size(), plain[step].size());
    EXPECT_EQ(std::memcmp(chained[step].data(), plain[step].data(), plain[step].size() * sizeof(float)), 0)
        << "decode step " << step << " differs between chained and plain launches";
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(Some, CudaChained, ::testing::Values("coder-dense", "qwen3_moe", "gemma3"), test::param_name);

TEST_F(CudaGolden, DeviceMemoryIsCountedAndAgreesWithTheDriver) {
  const DeviceMemory before = [] {
    auto probe = Model::load(test::model_dir("coder-dense"), cuda_options());  // creates the context
    return probe->impl().backend->memory();
  }();
  auto model = Model::load(test::model_dir("coder-moe-sparse-4bit"), cuda_options());
  const uint64_t weights = model->counters().device_memory_bytes;
  EXPECT_GT(weights, model->info().weight_bytes / 2) << "the weights live on the GPU in their stored format";
  // Plus the decode and prefill-chunk scratch, allocated at load (logits of 512 tokens dominate it here).
  EXPECT_LE(weights, model->info().weight_bytes * 11 / 10 + (64 << 20));
  auto s = model->new_session();
  std::vector<int32_t> prompt(300, 5);
  s->append(prompt);
  const ModelCounters c = model->counters();
  EXPECT_GT(c.device_memory_bytes, weights) << "KV pages and scratch are counted";
  EXPECT_GE(c.device_memory_peak_bytes, c.device_memory_bytes);
  const DeviceMemory m = model->impl().backend->memory();
  // The driver's used bytes grew by about what the engine says it holds (cudaMalloc rounds up small blocks).
  const double driver = static_cast<double>(m.driver_used_bytes) - static_cast<double>(before.driver_used_bytes);
  RecordProperty("engine_bytes", std::to_string(c.device_memory_bytes));
  RecordProperty("driver_delta_bytes", std::to_string(driver));
  EXPECT_NEAR(driver, static_cast<double>(c.device_memory_bytes), 0.05 * c.device_memory_bytes + (64 << 20))
      << "engine " << c.device_memory_bytes << " bytes, driver delta " << driver;
}

TEST_F(CudaGolden, ReplayedDecodeStepsAreTimedOnTheDevice) {
  auto model = Model::load(test::model_dir("coder-dense"), cuda_options());
  auto s = model->new_session();
  std::vector<int32_t> prompt(40, 7);
  s->append(prompt);
  const ModelCounters before = model->counters();
  constexpr int kSteps = 12;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kSteps; ++i) {
    const int32_t token = 11 + i;
    s->append(std::span<const int32_t>(&token, 1));
  }
  const auto wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  const ModelCounters c = model->counters();
  if (c.device_decode_steps == before.device_decode_steps)
    GTEST_SKIP() << "decode ran without graphs (LMLAB_CUDA_GRAPH=0?): nothing is timed";
  EXPECT_EQ(c.device_decode_steps - before.device_decode_steps, uint64_t{kSteps}) << "every one-token step is a replay";
  const uint64_t busy = c.device_decode_ns - before.device_decode_ns;
  EXPECT_GT(busy, 0u);
  EXPECT_LT(busy, static_cast<uint64_t>(wall_ns)) << "the device's time is a part of the steps' wall time";
  // The prompt's chunk is not a replay: a second model's prefill leaves the counters where they were.
  auto other = Model::load(test::model_dir("coder-dense"), cuda_options());
  other->new_session()->append(prompt);
  EXPECT_EQ(other->counters().device_decode_steps, 0u);
}

}  // namespace
}  // namespace lmlab
