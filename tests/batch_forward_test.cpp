// Continuous batching at the engine level (Model::append_batch): sequences of mixed prompt lengths and positions
// advanced in one forward step get the logits each gets alone (within the tolerance of a different summation
// order: rows batched together may take other matmul tiles), on dense, MoE, sliding-window (gemma3, window 16)
// and 4-bit models; a failing step leaves every session as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fixtures.h"
#include "golden_checks.h"
#include "kernels/cpu/isa.h"
#include "lmlab/error.h"
#include "lmlab/model.h"
#include "tolerance.h"

namespace lmlab {
namespace {

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
  return ids;
}

// Rounding differences of one layer's matmuls (reductions over hidden and intermediate), carried through the
// layers; quantized models add the int16 activations' step where a short prompt chunk takes the integer kernel
// alone and the f32 one batched, bf16 models on AVX512_BF16 the split activations' where a decode step alone takes
// the vdpbf16ps GEMV and a batch of 2-63 rows the f32 FMA tiles (kernels/cpu/matmul_bf16.h).
double batch_tolerance(const ModelInfo& info) {
  const int64_t len = std::max(info.hidden, info.n_heads * info.head_dim) * 4;
  const double tol = test::tolerance(kernels::WeightType::f32, len) * static_cast<double>(info.n_layers);
  if (info.weight_format[0] == 'q') return tol + test::int16_activation_tolerance(len);
  if (info.weight_format == "BF16" && kernels::cpu::avx512_bf16_enabled())
    return tol + test::bf16x2_activation_tolerance(len);
  return tol;
}

// Per step, the chunk each sequence appends (0: it sits this step out).
constexpr int kSequences = 3;
const std::vector<std::array<int64_t, kSequences>> kSchedule = {
    {20, 5, 33},  // three prompts of different lengths, all at position 0
    {1, 9, 1},    // two decode steps and a prompt's second chunk
    {1, 1, 1}, {1, 1, 1}, {1, 1, 1},
    {1, 0, 1},    // the second sequence sits out (finished, or waiting) while the others go on
    {1, 0, 12},   // a decode step beside a chunk appended to a sequence already decoding (a follow-up turn)
    {1, 1, 1}, {1, 1, 1},
};

class BatchForward : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchForward, LogitsEqualEachSequenceAlone) {
  ModelOptions o;
  o.kv_block_tokens = 16;
  auto model = Model::load(test::model_dir(GetParam()), o);
  const ModelInfo& info = model->info();
  std::vector<std::unique_ptr<Session>> batched, alone;
  std::vector<std::vector<int32_t>> streams;
  for (int i = 0; i < kSequences; ++i) {
    batched.push_back(model->new_session());
    alone.push_back(model->new_session());
    streams.push_back(random_ids(80, info.vocab, 100 + i));
  }
  std::array<int64_t, kSequences> used{};
  for (size_t step = 0; step < kSchedule.size(); ++step) {
    std::vector<BatchAppend> entries;
    std::vector<int> who;
    for (int i = 0; i < kSequences; ++i) {
      if (kSchedule[step][i] == 0) continue;
      entries.push_back({batched[i].get(), std::span<const int32_t>(streams[i]).subspan(used[i], kSchedule[step][i])});
      who.push_back(i);
    }
    const std::vector<std::span<const float>> got = model->append_batch(entries);
    ASSERT_EQ(got.size(), entries.size());
    for (size_t e = 0; e < entries.size(); ++e) {
      const int i = who[e];
      SCOPED_TRACE("step " + std::to_string(step) + " sequence " + std::to_string(i));
      const std::span<const float> want = alone[i]->append(entries[e].tokens);
      EXPECT_TRUE(test::close(got[e], want, batch_tolerance(info), "batched vs alone"));
      used[i] += kSchedule[step][i];
      EXPECT_EQ(batched[i]->n_past(), used[i]);
      EXPECT_EQ(batched[i]->kv_bytes(), alone[i]->kv_bytes());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchForward,
                         ::testing::Values("llama", "qwen3", "qwen3_moe", "mixtral", "gemma3", "coder-moe", "llama-4bit",
                                           "qwen3_moe-4bit"),
                         test::param_name);

TEST(BatchForwardErrors, AFailingStepLeavesEverySessionAsItWas) {
  ModelOptions o;
  o.ctx_size = 32;
  auto model = Model::load(test::model_dir("qwen3"), o);
  const int64_t vocab = model->info().vocab;
  auto a = model->new_session(), b = model->new_session();
  const auto pa = random_ids(10, vocab, 1), pb = random_ids(30, vocab, 2);
  a->append(pa);
  b->append(pb);
  const auto more = random_ids(4, vocab, 3);
  // b would pass the context size: the whole step is refused, a keeps its 10 tokens.
  const std::vector<BatchAppend> step = {{a.get(), more}, {b.get(), more}};
  try {
    model->append_batch(step);
    FAIL() << "expected a context overflow";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
  }
  EXPECT_EQ(a->n_past(), 10);
  EXPECT_EQ(b->n_past(), 30);
  const std::vector<BatchAppend> twice = {{a.get(), more}, {a.get(), more}};
  EXPECT_THROW(model->append_batch(twice), Error);
  EXPECT_EQ(a->n_past(), 10);
  // Without b the step runs, and a goes on as if alone.
  auto ref = model->new_session();
  ref->append(pa);
  const auto want = ref->append(more);
  const std::vector<BatchAppend> ok = {{a.get(), more}};
  EXPECT_TRUE(test::close(model->append_batch(ok)[0], want, batch_tolerance(model->info()), "after the failure"));
}

}  // namespace
}  // namespace lmlab
