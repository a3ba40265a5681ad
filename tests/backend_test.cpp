// The device seam (engine/src/backend): the CPU backend is the Transformer itself, the Transformer's stages
// compose to its forward (the --gpu-layers split runs them on two sides), and a device this build or machine
// lacks is a clear error naming --device.
#include <gtest/gtest.h>

#include "backend/gpu_layer_plan.h"
#include "model/backend_factory.h"
#include "fixtures.h"
#include "lmlab/error.h"
#include "model/model_impl.h"

namespace lmlab {
namespace {

TEST(Backend, CpuModelRunsOnTheCpuBackend) {
  auto model = Model::load(test::model_dir("llama"));
  EXPECT_EQ(model->impl().backend->device(), Device::cpu);
  EXPECT_EQ(model->impl().backend->device_layers(), 0);
  EXPECT_EQ(model->counters().device_memory_bytes, 0u);
}

// embed + layers [0, k) + layers [k, L) + head is the forward, bit for bit, at every split point.
TEST(Backend, TransformerStagesComposeToTheForward) {
  for (const char* name : {"llama", "gemma3", "qwen3_moe"}) {
    SCOPED_TRACE(name);
    auto model = Model::load(test::model_dir(name));
    const Transformer& t = *model->impl().transformer;
    const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3, 11, 4, 8, 6, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    std::vector<float> want;
    {
      KvSequence cache = model->impl().make_sequence();
      t.forward(tokens, 0, cache, true, want);
    }
    const int64_t L = t.spec().n_layers, n = static_cast<int64_t>(tokens.size());
    for (int64_t k = 0; k <= L; ++k) {
      KvSequence cache = model->impl().make_sequence();
      std::vector<float> x(n * t.spec().hidden), got;
      t.embed(tokens, x.data());
      t.run_layers(x.data(), n, 0, cache, 0, k);
      t.run_layers(x.data(), n, 0, cache, k, L);
      t.head(x.data(), n, true, got);
      EXPECT_EQ(got, want) << "split at layer " << k;
    }
  }
}

TEST(Backend, GpuLayersWithoutCudaIsAnError) {
  ModelOptions o;
  o.gpu_layers = 1;
  try {
    Model::load(test::model_dir("llama"), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-layers"), std::string::npos) << e.what();
  }
}

TEST(Backend, UnavailableDeviceIsAnErrorNamingIt) {
  const std::string why = device_unavailable_reason(Device::cuda);
  if (why.empty()) GTEST_SKIP() << "a CUDA device is present: the CUDA suites cover --device cuda";
  ModelOptions o;
  o.device = Device::cuda;
  try {
    Model::load(test::model_dir("llama"), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("--device"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}

// --gpu-layers 0: layers go to the device in order while weights + KV fit after the resident part.
TEST(GpuLayerPlan, LayersInOrderWhileTheyFit) {
  const std::vector<uint64_t> layers = {100, 100, 50, 100};
  EXPECT_EQ(plan_gpu_layers(layers, 20, 1000).layers, 4) << "everything fits";
  EXPECT_EQ(plan_gpu_layers(layers, 20, 370).layers, 4) << "exactly enough";
  EXPECT_EQ(plan_gpu_layers(layers, 20, 369).layers, 3) << "one byte short of the fourth layer";
  const GpuLayerPlan p = plan_gpu_layers(layers, 20, 269);  // the third (50) does not fit in the 49 left
  EXPECT_EQ(p.layers, 2);
  EXPECT_EQ(p.layer_bytes, 200u);
  EXPECT_EQ(plan_gpu_layers(layers, 2000, 1000).layers, 0) << "the resident part alone does not fit";
  EXPECT_EQ(plan_gpu_layers({}, 0, 10).layers, 0);
  EXPECT_NE(p.to_text().find("2 layers"), std::string::npos) << p.to_text();
}

}  // namespace
}  // namespace lmlab
