// The checks every golden fixture gets (issues 2 and 3), in one place: logits of each prompt_i in one forward
// within 2e-2 absolute and 1e-3 of the logit range, greedy tokens identical to greedy_i; and, for the trained
// coder models, perplexity on eval_ids_* within 0.5% of the reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fixtures.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"

namespace lmlab::test {

constexpr double kMaxAbsLogitError = 2e-2;     // max |logit - golden|
constexpr double kMaxRelLogitError = 1e-3;     // ... relative to the golden logit range
constexpr double kMaxPerplexityError = 0.005;  // relative, against the golden json's eval_ppl
constexpr double kMaxTokenNllError = 0.05;     // per token, against the fp32 reference's NLL

// Test-name-safe fixture names ("coder-dense" -> "coder_dense").
inline std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (auto& c : s)
    if (c == '-') c = '_';
  return s;
}

// A golden file's prompts prompt_0, prompt_1, ... up to the first missing one.
inline std::vector<std::vector<int32_t>> golden_prompts(const SafetensorsFile& golden) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0;; ++i) {
    auto prompt = golden_tensor<int32_t>(golden, "prompt_" + std::to_string(i));
    if (prompt.empty()) return prompts;
    prompts.emplace_back(prompt.begin(), prompt.end());
  }
}

inline void expect_golden_logits_and_greedy(const Model& model, const std::string& name) {
  SafetensorsFile golden(golden_path(name));
  const int64_t vocab = model.info().vocab;
  int checked = 0;
  const auto prompts = golden_prompts(golden);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t>& prompt = prompts[i];
    SCOPED_TRACE(name + " prompt_" + std::to_string(i));
    auto want = golden_tensor<float>(golden, "logits_" + std::to_string(i));
    auto greedy = golden_tensor<int32_t>(golden, "greedy_" + std::to_string(i));
    auto session = model.new_session();  // owns the logits `got` points into
    auto got = session->append(prompt, true);
    ASSERT_EQ(got.size(), want.size());
    double max_abs = 0.0;
    size_t worst = 0;
    float lo = want[0], hi = want[0];
    for (size_t j = 0; j < got.size(); ++j) {
      const double d = std::fabs(static_cast<double>(got[j]) - want[j]);
      if (d > max_abs) max_abs = d, worst = j;
      lo = std::min(lo, want[j]);
      hi = std::max(hi, want[j]);
    }
    EXPECT_LE(max_abs, kMaxAbsLogitError) << "worst at token " << worst / vocab << " id " << worst % vocab;
    EXPECT_LE(max_abs / (hi - lo), kMaxRelLogitError) << "logit range " << hi - lo;

    SamplingParams sp;
    sp.max_tokens = static_cast<int64_t>(greedy.size());
    sp.stop_at_eos = false;
    auto res = generate(*model.new_session(), prompt, sp);
    EXPECT_EQ(res.tokens, std::vector<int32_t>(greedy.begin(), greedy.end()));
    ++checked;
  }
  EXPECT_EQ(checked, 3) << "each golden file holds three prompts";
}

inline void expect_golden_perplexity(const Model& model, const std::string& name) {
  SafetensorsFile golden(golden_path(name));
  std::ifstream in(fixtures_dir() / "golden" / (name + ".json"));
  const double want_ppl = nlohmann::json::parse(in)["eval_ppl"].get<double>();
  double total = 0.0, worst_token_err = 0.0;
  size_t count = 0;
  for (int i = 0;; ++i) {
    auto ids = golden_tensor<int32_t>(golden, "eval_ids_" + std::to_string(i));
    if (ids.empty()) break;
    auto want_nll = golden_tensor<float>(golden, "eval_nll_" + std::to_string(i));
    NllResult r = evaluate_nll(model, ids);
    ASSERT_EQ(r.nll.size(), want_nll.size());
    for (size_t j = 0; j < r.nll.size(); ++j) {
      worst_token_err = std::max(worst_token_err, std::fabs(r.nll[j] - want_nll[j]));
      total += r.nll[j];
    }
    count += r.nll.size();
  }
  ASSERT_GT(count, 0u);
  const double ppl = std::exp(total / static_cast<double>(count));
  EXPECT_NEAR(ppl, want_ppl, kMaxPerplexityError * want_ppl) << name << " perplexity " << ppl;
  EXPECT_LT(worst_token_err, kMaxTokenNllError);
}

}  // namespace lmlab::test
