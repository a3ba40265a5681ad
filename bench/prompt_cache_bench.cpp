// Time to first token of turn 3 of a 3-turn chat on coder-moe, with and without the prompt cache.
// Each turn is a new request (a fresh Session, as the server makes) whose prompt is the whole conversation so
// far in ChatML; with the cache, turn 3 only prefills the new user message. Items = prompt tokens of turn 3.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "lmlab/generate.h"
#include "lmlab/model.h"

namespace {

std::string fixture_model(const char* name) { return std::string(LMLAB_FIXTURES_DIR) + "/models/" + name; }

std::string code_block(int copies) {
  std::string s;
  for (int i = 0; i < copies; ++i)
    s += "def insert(root, val):\n    if root is None:\n        return Node(val)\n    if val < root.val:\n"
         "        root.left = insert(root.left, val)\n    else:\n        root.right = insert(root.right, val)\n"
         "    return root\n# step " + std::to_string(i) + "\n";
  return s;
}

void BM_chat_turn3_ttft(benchmark::State& state) {
  const bool cached = state.range(0) != 0;
  lmlab::ModelOptions o;
  o.prompt_cache_mb = cached ? 512 : 0;
  std::shared_ptr<lmlab::Model> model;
  lmlab::SamplingParams sp;
  sp.max_tokens = 48;
  const std::string users[3] = {"Review this code:\n" + code_block(40), "Now make it iterative:\n" + code_block(8),
                                "And add a docstring."};
  int64_t turn3_tokens = 0, turn3_cached = 0;
  for (auto _ : state) {
    state.PauseTiming();
    model = lmlab::Model::load(fixture_model("coder-moe"), o);  // an empty cache every iteration
    const lmlab::Tokenizer& tok = model->tokenizer();
    std::string convo = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    lmlab::GenerationResult res;
    for (int turn = 0; turn < 3; ++turn) {
      convo += "<|im_start|>user\n" + users[turn] + "<|im_end|>\n<|im_start|>assistant\n";
      const auto ids = tok.encode(convo);
      auto session = model->new_session();
      if (turn == 2) {
        sp.max_tokens = 1;  // time to first token
        state.ResumeTiming();
      }
      res = lmlab::generate(*session, ids, sp);
      if (turn == 2) {
        state.PauseTiming();
        turn3_tokens = static_cast<int64_t>(ids.size());
        turn3_cached = res.stats.prompt_cached_tokens;
      }
      convo += res.text + "<|im_end|>\n";
    }
    sp.max_tokens = 48;
    state.ResumeTiming();
  }
  state.counters["turn3_prompt_tokens"] = static_cast<double>(turn3_tokens);
  state.counters["turn3_cached_tokens"] = static_cast<double>(turn3_cached);
}
BENCHMARK(BM_chat_turn3_ttft)->Arg(0)->Arg(1)->ArgNames({"prompt_cache"})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
