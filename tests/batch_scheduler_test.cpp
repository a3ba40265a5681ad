// The server's continuous batching (server/batch_scheduler.h) without HTTP: jobs submitted to one engine thread.
// Greedy tokens of sequences run together equal each run alone (generate()), token for token, on a fixture and on
// a model made here, with MoE and sliding-window models too; with prompts long enough to be prefilled in chunks
// beside running decodes, a sequence finishing while others go on, one joining mid-batch and one cancelled.
#include <gtest/gtest.h>

#include <future>
#include <random>

#include "fixtures.h"
#include "golden_checks.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "server/batch_scheduler.h"
#include "tiny_model.h"

namespace lmlab {
namespace {

using server::BatchJob;
using server::BatchScheduler;

struct Stream {
  std::vector<int32_t> prompt;
  int64_t max_tokens;
  int cancel_after = -1;  // events after which the consumer goes away (-1: never)
};

std::vector<Stream> mixed_streams(int64_t vocab) {
  std::mt19937_64 rng(7);
  auto ids = [&](int64_t n) {
    std::vector<int32_t> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
    return v;
  };
  // A short one that finishes first, prompts longer than --prefill-size (chunked beside running decodes).
  return {{ids(3), 6}, {ids(45), 20}, {ids(11), 24}, {ids(70), 12}};
}

SamplingParams greedy(int64_t max_tokens) {
  SamplingParams sp;
  sp.max_tokens = max_tokens;
  sp.stop_at_eos = false;
  return sp;
}

std::vector<int32_t> alone(const Model& model, const Stream& s) {
  return generate(*model.new_session(), s.prompt, greedy(s.max_tokens)).tokens;
}

// Submits the streams: the first at once, the rest each when the previous one produced its second token, so
// each joins a batch already decoding. Returns every job's tokens as its events gave them.
std::vector<std::vector<int32_t>> run_batched(const Model& model, const std::vector<Stream>& streams) {
  BatchScheduler scheduler(model);
  const size_t n = streams.size();
  std::vector<std::vector<int32_t>> tokens(n);
  std::vector<std::promise<std::shared_ptr<BatchJob>>> jobs(n);
  std::function<void(size_t)> submit = [&](size_t i) {
    auto job = std::make_shared<BatchJob>(streams[i].prompt, greedy(streams[i].max_tokens), [&, i](const TokenEvent& ev) {
      tokens[i].push_back(ev.id);
      if (tokens[i].size() == 2 && i + 1 < n) submit(i + 1);  // on the engine thread: joins at the next step
      return streams[i].cancel_after < 0 || static_cast<int>(tokens[i].size()) < streams[i].cancel_after;
    });
    jobs[i].set_value(job);
    scheduler.submit(job);
  };
  submit(0);
  for (size_t i = 0; i < n; ++i) {
    const std::shared_ptr<BatchJob> job = jobs[i].get_future().get();  // submitted by the engine thread
    while (job->next()) {
    }
    EXPECT_FALSE(job->error());
    EXPECT_EQ(job->result().tokens, tokens[i]) << "the result holds what the events gave";
  }
  return tokens;
}

void expect_batched_equals_alone(const Model& model) {
  auto streams = mixed_streams(model.info().vocab);
  const auto got = run_batched(model, streams);
  for (size_t i = 0; i < streams.size(); ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    EXPECT_EQ(got[i], alone(model, streams[i]));
  }
  EXPECT_EQ(model.counters().kv_cache_bytes, 0u) << "every finished sequence returned its KV blocks";
}

ModelOptions small_chunks() {
  ModelOptions o;
  o.prefill_size = 16;  // long prompts take several steps, interleaved with the others' decode steps
  o.kv_block_tokens = 16;
  return o;
}

class BatchScheduling : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchScheduling, GreedyTokensEqualEachRunAlone) {
  expect_batched_equals_alone(*Model::load(test::model_dir(GetParam()), small_chunks()));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchScheduling, ::testing::Values("coder-dense", "coder-moe", "gemma3", "llama-4bit"),
                         test::param_name);

TEST(BatchSchedulingModelMadeHere, GreedyTokensEqualEachRunAlone) {
  test::TinyModel tiny;
  expect_batched_equals_alone(*Model::load(tiny.dir(), small_chunks()));
}

TEST(BatchSchedulingCancel, ACancelledSequenceStopsAndTheOthersAreUntouched) {
  auto model = Model::load(test::model_dir("coder-dense"), small_chunks());
  auto streams = mixed_streams(model->info().vocab);
  streams[1].cancel_after = 3;
  const auto got = run_batched(*model, streams);
  for (size_t i = 0; i < streams.size(); ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    auto want = alone(*model, streams[i]);
    if (i == 1) want.resize(3);  // no token past the cancelled one
    EXPECT_EQ(got[i], want);
  }
  EXPECT_EQ(model->counters().kv_cache_bytes, 0u);
}

TEST(BatchSchedulingErrors, AJobThatCannotRunFailsAloneWithItsError) {
  ModelOptions o = small_chunks();
  o.ctx_size = 40;
  auto model = Model::load(test::model_dir("coder-dense"), o);
  BatchScheduler scheduler(*model);
  const std::vector<int32_t> fits = {5, 6, 7}, too_long(60, 9);
  auto ok = std::make_shared<BatchJob>(fits, greedy(8), [](const TokenEvent&) { return true; });
  auto bad = std::make_shared<BatchJob>(too_long, greedy(8), [](const TokenEvent&) { return true; });
  scheduler.submit(ok);
  scheduler.submit(bad);
  while (bad->next()) {
  }
  EXPECT_TRUE(bad->error());
  while (ok->next()) {
  }
  EXPECT_FALSE(ok->error());
  EXPECT_EQ(ok->result().tokens, generate(*model->new_session(), fits, greedy(8)).tokens);
}

}  // namespace
}  // namespace lmlab
