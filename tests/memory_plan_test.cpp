// Memory plan: strategies, byte sums and the decode estimate on the fixture models, with the available
// memory given (so the tests do not depend on the machine).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "experts/expert_cache_budget.h"
#include "experts/expert_layout.h"
#include "arch/registry.h"
#include "fixtures.h"
#include "lmlab/memory_plan.h"
#include "lmlab/results.h"
#include "lmlab/safetensors.h"

namespace lmlab {
namespace {

TEST(MemoryPlan, DenseModelFitsFully) {
  MemoryPlanOptions o;
  o.available_bytes = 8ull << 30;
  o.ctx_size = 256;
  const MemoryPlan p = plan_memory(test::model_dir("coder-dense"), o);
  EXPECT_EQ(p.strategy, "full");
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.expert_bytes, 0u);
  EXPECT_EQ(p.resident_weight_bytes, p.weight_bytes);
  const ModelSpec s = load_model_spec(test::model_dir("coder-dense").string());
  EXPECT_EQ(p.kv_bytes, static_cast<uint64_t>(2 * s.n_layers * s.n_kv_heads * s.head_dim * 256 * 4));
  EXPECT_EQ(p.total_bytes, p.weight_bytes + p.kv_bytes + p.headroom_bytes);
  EXPECT_EQ(p.ssd_bytes_per_token, 0u);
  EXPECT_EQ(estimate_decode(p.bytes_per_token, p.ssd_bytes_per_token, 0, 0).tok_s, 0.0);  // no bandwidth given
}

TEST(MemoryPlan, TooLittleMemoryIsPartialAndRecommendsStreaming) {
  const WeightStore store = WeightStore::open_dir(test::model_dir("coder-moe"));
  MemoryPlanOptions o;
  o.available_bytes = store.total_bytes() - (1 << 20);  // a MiB short of the weights alone
  o.headroom_bytes = 0;
  o.ctx_size = 64;
  const MemoryPlan p = plan_memory(test::model_dir("coder-moe"), o);
  EXPECT_EQ(p.strategy, "partial");
  EXPECT_FALSE(p.fits);
  EXPECT_NE(p.note.find("--stream-experts"), std::string::npos) << p.note;
}

TEST(MemoryPlan, StreamingPlanCountsExpertsAndEstimatesDecode) {
  const auto dir = test::model_dir("coder-moe-sparse-4bit");
  const ModelSpec spec = load_model_spec(dir.string());
  const WeightStore store = WeightStore::open_dir(dir);
  const ExpertLayout layout = ExpertLayout::build(store, spec);
  MemoryPlanOptions o;
  o.stream_experts = true;
  o.expert_cache_mb = 4;
  o.available_bytes = 1ull << 30;
  o.ctx_size = 512;
  const MemoryPlan p = plan_memory(dir, o);
  EXPECT_EQ(p.strategy, "ssd_streaming");
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.expert_bytes, layout.total_tensor_bytes());
  EXPECT_EQ(p.resident_weight_bytes, p.weight_bytes - p.expert_bytes);
  EXPECT_EQ(p.expert_cache_bytes, 4u << 20);
  EXPECT_EQ(p.total_bytes, p.resident_weight_bytes + p.expert_cache_bytes + p.kv_bytes + p.headroom_bytes);
  const double hit = static_cast<double>(4u << 20) / layout.total_read_bytes();
  EXPECT_NEAR(p.expert_hit_rate, hit, 1e-9);
  const double per_expert_read = static_cast<double>(layout.total_read_bytes()) / layout.all().size();
  EXPECT_NEAR(static_cast<double>(p.ssd_bytes_per_token),
              layout.n_moe_layers() * spec.top_k * per_expert_read * (1 - hit), 2.0);
  // The decode estimate is the lab's arithmetic over the plan's bytes (results: estimate_decode).
  const DecodeEstimate est = estimate_decode(p.bytes_per_token, p.ssd_bytes_per_token, 10e9, 1e9);
  EXPECT_GT(est.tok_s, 0.0);
  EXPECT_EQ(est.basis, "memory+ssd");
  const double want = 1.0 / ((p.bytes_per_token - static_cast<double>(p.ssd_bytes_per_token)) / 10e9 +
                             static_cast<double>(p.ssd_bytes_per_token) / 1e9);
  EXPECT_NEAR(est.tok_s, want, want * 1e-9);
  EXPECT_EQ(estimate_decode(p.bytes_per_token, p.ssd_bytes_per_token, 10e9, 0).tok_s, 0.0);  // drive unknown
  EXPECT_EQ(estimate_decode(p.bytes_per_token, p.ssd_bytes_per_token, 0, 1e9).basis, "ssd");  // an upper bound
  const auto j = nlohmann::json::parse(p.to_json());
  for (const char* k : {"strategy", "weight_bytes", "kv_bytes", "total_bytes", "available_bytes",
                        "expert_cache_bytes", "ssd_bytes_per_token", "bytes_per_token"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["strategy"], "ssd_streaming");
}

// --expert-cache-mb 0 plans the budget the engine will use (resolve_expert_cache_bytes: a quarter of the
// experts, at least one), not whatever memory is free; a budget holding every expert is the "full" strategy.
TEST(MemoryPlan, AutoCacheIsTheEngineDefaultAndAllExpertsIsFull) {
  const auto dir = test::model_dir("qwen3_moe");
  const ExpertLayout layout = ExpertLayout::build(WeightStore::open_dir(dir), load_model_spec(dir.string()));
  MemoryPlanOptions o;
  o.stream_experts = true;
  o.available_bytes = 4ull << 30;  // room for every expert
  o.ctx_size = 128;
  const MemoryPlan quarter = plan_memory(dir, o);
  EXPECT_EQ(quarter.expert_cache_bytes, std::max(layout.total_read_bytes() / 4, layout.max_buffer_bytes()));
  EXPECT_EQ(quarter.expert_cache_bytes, resolve_expert_cache_bytes(0, layout));
  EXPECT_EQ(quarter.strategy, "ssd_streaming");
  o.expert_cache_mb = 1 << 20;  // more than every expert
  const MemoryPlan p = plan_memory(dir, o);
  EXPECT_EQ(p.strategy, "full");
  EXPECT_GE(p.expert_cache_bytes, p.expert_bytes);
  EXPECT_EQ(p.ssd_bytes_per_token, 0u);
  EXPECT_EQ(estimate_decode(p.bytes_per_token, p.ssd_bytes_per_token, 0, 0).tok_s, 0.0);  // no bandwidth given
}

TEST(MemoryPlan, SlidingWindowLayersHoldTheirWindow) {
  MemoryPlanOptions o;
  o.available_bytes = 8ull << 30;
  o.ctx_size = 1000;
  const ModelSpec s = load_model_spec(test::model_dir("gemma3").string());
  const MemoryPlan p = plan_memory(test::model_dir("gemma3"), o);
  uint64_t want = 0;
  for (const auto& l : s.layers)
    want += 2ull * s.n_kv_heads * s.head_dim * 4 * static_cast<uint64_t>(l.window > 0 ? std::min<int64_t>(l.window, 1000) : 1000);
  EXPECT_EQ(p.kv_bytes, want);
  EXPECT_LT(p.kv_bytes, 2ull * s.n_layers * s.n_kv_heads * s.head_dim * 4 * 1000);
}

TEST(MemoryPlan, ReadsMemAvailable) { EXPECT_GT(mem_available_bytes(), 0u); }

}  // namespace
}  // namespace lmlab
