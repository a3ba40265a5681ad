// TurboQuant KV quality on the trained coder models (issue 5): with every token compressed (hot window 0),
// perplexity on the held-out eval_ids must stay within +1.0% of the uncompressed KV cache and the greedy
// (argmax) token must agree with the uncompressed one on >= 97% of the eval positions. The affine int4 / int8
// KV baselines are measured the same way for comparison (reported; int4 is held to the same bar).
// The model runs through Transformer::forward with a KvSequence of turbo layers built here, so the check does
// not depend on how --turbo-kv is wired into sessions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "fixtures.h"
#include "kv/turboquant/kv_layer_turbo.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"
#include "model/model_impl.h"

namespace lmlab {
namespace {

using test::golden_tensor;

constexpr double kMaxPerplexityIncrease = 0.010;  // issue 5: <= +1.0% over uncompressed
constexpr double kMinGreedyAgreement = 0.97;      // issue 5: >= 97% of tokens

struct EvalResult {
  double nll_sum = 0.0;
  int64_t count = 0;
  std::vector<int32_t> argmax;  // per evaluated position
  double perplexity() const { return std::exp(nll_sum / static_cast<double>(count)); }
};

// Teacher-forced pass over ids in prefill chunks, caches from make_cache.
void evaluate(const Model& model, std::span<const int32_t> ids, const std::function<KvSequence()>& make_cache,
              EvalResult& r) {
  const Transformer& tf = *model.impl().transformer;
  const int64_t vocab = model.info().vocab, chunk = model.options().prefill_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  KvSequence cache = make_cache();
  std::vector<float> logits;
  for (int64_t off = 0; off < n - 1; off += chunk) {
    const int64_t m = std::min(chunk, n - 1 - off);
    tf.forward(ids.subspan(off, m), off, cache, /*all_logits=*/true, logits);
    for (int64_t t = 0; t < m; ++t) {
      std::span<const float> row(logits.data() + t * vocab, vocab);
      r.nll_sum -= log_prob(row, ids[off + t + 1]);
      r.argmax.push_back(static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()));
    }
    r.count += m;
  }
}

KvSequence turbo_sequence(const Model& model, const TurboKvOptions& opt) {
  const auto& s = model.impl().transformer->spec();
  KvSequence seq;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    TurboKvOptions o = opt;
    o.seed = opt.seed + l;  // independent rotations and QJL matrices per layer
    seq.layers.push_back(make_turbo_kv_layer({s.n_heads, s.n_kv_heads, s.head_dim}, o));
  }
  return seq;
}

struct Config {
  std::string name;
  TurboKvOptions opt;
  bool held_to_bar;
};

std::vector<Config> configs() {
  std::vector<Config> c;
  auto add = [&](std::string name, TurboKvOptions::Mode m, int kb, bool qjl, int vb, bool bar) {
    TurboKvOptions o;
    o.mode = m;
    o.k_bits = kb;
    o.k_qjl = qjl;
    o.v_bits = vb;
    o.hot_window = 0;  // every token compressed
    c.push_back({std::move(name), o, bar});
  };
  add("turbo K3+QJL V3 (4.25/3.125)", TurboKvOptions::Mode::turbo, 3, true, 3, true);
  add("turbo K4 V3 (4.125/3.125)", TurboKvOptions::Mode::turbo, 4, false, 3, false);
  add("turbo K4+QJL V4", TurboKvOptions::Mode::turbo, 4, true, 4, false);
  add("turbo K3 V3 (no QJL)", TurboKvOptions::Mode::turbo, 3, false, 3, false);
  add("affine int4", TurboKvOptions::Mode::affine4, 0, false, 0, true);
  add("affine int8", TurboKvOptions::Mode::affine8, 0, false, 0, false);
  return c;
}

class TurboQuantQuality : public ::testing::TestWithParam<std::string> {};

TEST_P(TurboQuantQuality, EveryTokenCompressedPerplexityAndGreedyAgreement) {
  const std::string name = GetParam();
  auto model = Model::load(test::model_dir(name));
  SafetensorsFile golden(test::golden_path(name));
  std::vector<std::span<const int32_t>> sets;
  for (int i = 0;; ++i) {
    auto ids = golden_tensor<int32_t>(golden, "eval_ids_" + std::to_string(i));
    if (ids.empty()) break;
    sets.push_back(ids);
  }
  ASSERT_FALSE(sets.empty());
  EvalResult base;
  for (auto ids : sets) evaluate(*model, ids, [&] { return model->impl().make_sequence(); }, base);
  std::printf("[          ] %s uncompressed KV: perplexity %.4f over %lld tokens\n", name.c_str(), base.perplexity(),
              static_cast<long long>(base.count));
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    EvalResult r;
    for (auto ids : sets) evaluate(*model, ids, [&] { return turbo_sequence(*model, c.opt); }, r);
    ASSERT_EQ(r.count, base.count);
    int64_t agree = 0;
    for (size_t i = 0; i < r.argmax.size(); ++i) agree += r.argmax[i] == base.argmax[i];
    const double rel = r.perplexity() / base.perplexity() - 1.0, agreement = static_cast<double>(agree) / r.count;
    std::printf("[          ] %s %-30s perplexity %.4f (%+.2f%%), greedy agreement %.2f%%, %llu B/token/layer\n",
                name.c_str(), c.name.c_str(), r.perplexity(), 100.0 * rel, 100.0 * agreement,
                static_cast<unsigned long long>(turbo_kv_packed_bytes_per_token(
                    {model->info().n_heads, model->info().n_kv_heads, model->info().head_dim}, c.opt)));
    if (c.held_to_bar) {
      EXPECT_LE(rel, kMaxPerplexityIncrease);
      EXPECT_GE(agreement, kMinGreedyAgreement);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Coder, TurboQuantQuality, ::testing::Values("coder-dense", "coder-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s) if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace lmlab
