// lmlab verify --model DIR --golden FILE: logits of each golden prompt (one forward) and greedy tokens
// against transformers' reference; non-zero exit when any prompt is out of tolerance.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common.h"
#include "lmlab/generate.h"
#include "lmlab/safetensors.h"

namespace lmlab::cli {

namespace {

template <typename T>
std::span<const T> tensor_span(const SafetensorsFile& f, const std::string& name, DType want) {
  const TensorInfo* t = f.find(name);
  if (!t || t->dtype != want) return {};
  return {reinterpret_cast<const T*>(f.data(*t)), static_cast<size_t>(t->numel())};
}

struct Flags {
  EngineFlags engine;
  std::string golden;
  double abs_tol = 2e-2, rel_tol = 1e-3;
};

int run_verify(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  SafetensorsFile golden(fl.golden);
  const int64_t vocab = model->info().vocab;
  bool all_ok = true;
  int n_prompts = 0;
  for (int i = 0;; ++i) {
    auto prompt = tensor_span<int32_t>(golden, fmt::format("prompt_{}", i), DType::i32);
    if (prompt.empty()) break;
    ++n_prompts;
    auto want = tensor_span<float>(golden, fmt::format("logits_{}", i), DType::f32);
    auto greedy = tensor_span<int32_t>(golden, fmt::format("greedy_{}", i), DType::i32);
    auto session = model->new_session();
    auto got = session->append(prompt, /*all_logits=*/true);
    double max_abs = 0.0;
    float lo = want.empty() ? 0 : want[0], hi = lo;
    if (want.size() != got.size())
      throw Error(ErrorKind::invalid_input, fl.golden,
                  fmt::format("logits_{} has {} values, the model produced {}", i, want.size(), got.size()));
    for (size_t j = 0; j < got.size(); ++j) {
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(got[j]) - want[j]));
      lo = std::min(lo, want[j]);
      hi = std::max(hi, want[j]);
    }
    const double range = static_cast<double>(hi) - lo, rel = range > 0 ? max_abs / range : max_abs;
    const bool logits_ok = max_abs <= fl.abs_tol && rel <= fl.rel_tol;

    SamplingParams sp;
    sp.max_tokens = static_cast<int64_t>(greedy.size());
    sp.stop_at_eos = false;
    auto gen_session = model->new_session();
    auto res = generate(*gen_session, prompt, sp);
    int64_t first_diff = -1;
    for (size_t j = 0; j < greedy.size(); ++j)
      if (j >= res.tokens.size() || res.tokens[j] != greedy[j]) {
        first_diff = static_cast<int64_t>(j);
        break;
      }
    const bool greedy_ok = first_diff < 0;
    all_ok = all_ok && logits_ok && greedy_ok;
    fmt::print("prompt_{}: {} tokens  max|dlogit| {:.3e}  rel {:.3e}  {}  greedy {}/{} {}\n", i, prompt.size(),
               max_abs, rel, logits_ok ? "ok" : "FAIL", greedy_ok ? greedy.size() : first_diff, greedy.size(),
               greedy_ok ? "ok" : fmt::format("FAIL (first difference at token {})", first_diff));
    (void)vocab;
  }
  if (n_prompts == 0) throw Error(ErrorKind::invalid_input, fl.golden, "no prompt_0 tensor: not a golden file");
  fmt::print("{}: {} prompts {}\n", model->info().arch, n_prompts, all_ok ? "passed" : "FAILED");
  return all_ok ? 0 : 1;
}

}  // namespace

void register_verify(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("verify", "compare logits and greedy tokens with a golden file");
  fl->engine.add_to(*sub);
  sub->add_option("--golden", fl->golden, "golden .safetensors (prompt_i, logits_i, greedy_i)")->required();
  sub->add_option("--abs-tol", fl->abs_tol, "max |logit - golden| allowed");
  sub->add_option("--rel-tol", fl->rel_tol, "max |logit - golden| / logit range allowed");
  sub->callback(guarded([fl] { return run_verify(*fl); }));
}

}  // namespace lmlab::cli
