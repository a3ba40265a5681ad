// TurboQuant KV quality on the trained coder models (issue 5): every token compressed (hot window 0), perplexity
// on the held-out eval_ids against the uncompressed (paged f32) KV cache, and greedy agreement: the share of eval
// positions whose argmax token (teacher-forced) equals the uncompressed run's. Affine int4 / int8 KV are measured
// the same way for comparison. The model runs through Transformer::forward with a KvSequence of turbo layers
// built here, so the check does not depend on how --turbo-kv is wired into sessions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "fixtures.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"
#include "model/model_impl.h"

namespace lmlab {
namespace {

using test::golden_tensor;

// Issue 5's bar: every token compressed, perplexity <= +1.0% over the uncompressed KV and greedy agreement >= 97%.
// The figures move with the random rotation (coder-moe agreement 96.9-97.2% over seeds 0-6), so the default format
// (5-bit K, 4-bit V, angle-chosen codes) is judged on the mean over rotation seeds 0-2 (docs/turboquant.md has
// seeds 0-6: means +0.35% / 97.6% on coder-dense, +0.35% / 97.02% on coder-moe; on coder-moe the agreement bar
// is met only at the margin).
constexpr double kMaxPerplexityIncrease = 0.010;
constexpr double kMinGreedyAgreement = 0.97;
constexpr int kSeeds = 3;

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
    seq.layers.push_back(std::make_unique<KvLayerBlocked>(*model.impl().kv_pool,
                                                          turbo_kv_layer_spec({s.n_heads, s.n_kv_heads, s.head_dim}, o)));
  }
  return seq;
}

struct Config {
  std::string name;
  TurboKvOptions opt;
};

Config config(std::string name, TurboKvOptions::Mode m, int k_bits, bool qjl, int v_bits) {
  TurboKvOptions o;
  o.mode = m;
  o.k_bits = k_bits;
  o.k_qjl = qjl;
  o.v_bits = v_bits;
  o.hot_window = 0;  // every token compressed
  return {std::move(name), o};
}

const Config kDefault = config("turbo K5 V4 (default)", TurboKvOptions::Mode::turbo, 5, false, 4);
const Config kHeadline = config("turbo K3+QJL V3 (4.25/3.125)", TurboKvOptions::Mode::turbo, 3, true, 3);
const Config kAffine4 = config("affine int4", TurboKvOptions::Mode::affine4, 0, false, 0);

struct Measured {
  double rel_perplexity, agreement;
};

class TurboQuantQuality : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    name_ = GetParam();
    model_ = Model::load(test::model_dir(name_));
    golden_ = std::make_unique<SafetensorsFile>(test::golden_path(name_));
    for (int i = 0;; ++i) {
      auto ids = golden_tensor<int32_t>(*golden_, "eval_ids_" + std::to_string(i));
      if (ids.empty()) break;
      sets_.push_back(ids);
    }
    ASSERT_FALSE(sets_.empty());
    for (auto ids : sets_)
      evaluate(
          *model_, ids, [&] { return model_->impl().make_sequence(); }, base_);
    std::printf("[          ] %s uncompressed KV: perplexity %.4f over %lld tokens\n", name_.c_str(),
                base_.perplexity(), static_cast<long long>(base_.count));
  }

  Measured measure(const Config& c) {
    EvalResult r;
    for (auto ids : sets_)
      evaluate(
          *model_, ids, [&] { return turbo_sequence(*model_, c.opt); }, r);
    EXPECT_EQ(r.count, base_.count);
    int64_t agree = 0;
    for (size_t i = 0; i < r.argmax.size() && i < base_.argmax.size(); ++i) agree += r.argmax[i] == base_.argmax[i];
    const Measured m{r.perplexity() / base_.perplexity() - 1.0, static_cast<double>(agree) / r.count};
    const auto& info = model_->info();
    std::printf("[          ] %s %-30s perplexity %.4f (%+.2f%%), greedy agreement %.2f%%, %llu B/token/layer\n",
                name_.c_str(), c.name.c_str(), r.perplexity(), 100.0 * m.rel_perplexity, 100.0 * m.agreement,
                static_cast<unsigned long long>(
                    turbo_kv_packed_bytes_per_token({info.n_heads, info.n_kv_heads, info.head_dim}, c.opt)));
    return m;
  }

  std::string name_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<SafetensorsFile> golden_;
  std::vector<std::span<const int32_t>> sets_;
  EvalResult base_;
};

// Every token compressed: the default format against the bar (mean over rotation seeds); the paper's format and
// affine int4 are reported beside it.
TEST_P(TurboQuantQuality, EveryTokenCompressed) {
  const TurboKvOptions defaults;
  ASSERT_EQ(defaults.k_bits, kDefault.opt.k_bits);
  ASSERT_EQ(defaults.v_bits, kDefault.opt.v_bits);
  ASSERT_EQ(defaults.k_qjl, kDefault.opt.k_qjl);
  ASSERT_EQ(defaults.hot_window, 0);
  Measured mean{0.0, 0.0};
  for (int s = 0; s < kSeeds; ++s) {
    Config c = kDefault;
    c.opt.seed += 1000u * static_cast<uint64_t>(s);
    c.name += " seed " + std::to_string(s);
    const Measured m = measure(c);
    mean.rel_perplexity += m.rel_perplexity / kSeeds;
    mean.agreement += m.agreement / kSeeds;
  }
  std::printf("[          ] %s default format, mean of %d seeds: %+.2f%% perplexity, %.2f%% greedy agreement\n",
              name_.c_str(), kSeeds, 100.0 * mean.rel_perplexity, 100.0 * mean.agreement);
  EXPECT_LE(mean.rel_perplexity, kMaxPerplexityIncrease);
  EXPECT_GE(mean.agreement, kMinGreedyAgreement);
  measure(kHeadline);
  measure(kAffine4);
}

// Every other format, for the record (run with --gtest_also_run_disabled_tests; docs/turboquant.md's table).
TEST_P(TurboQuantQuality, DISABLED_AllFormats) {
  for (const Config& c : {config("turbo K4 V4", TurboKvOptions::Mode::turbo, 4, false, 4),
                          config("turbo K5 V5", TurboKvOptions::Mode::turbo, 5, false, 5),
                          config("turbo K5 V3", TurboKvOptions::Mode::turbo, 5, false, 3),
                          config("turbo K4+QJL V4", TurboKvOptions::Mode::turbo, 4, true, 4),
                          config("turbo K4 V3", TurboKvOptions::Mode::turbo, 4, false, 3),
                          config("turbo K3 V3", TurboKvOptions::Mode::turbo, 3, false, 3),
                          config("turbo K2+QJL V2", TurboKvOptions::Mode::turbo, 2, true, 2),
                          config("affine int8", TurboKvOptions::Mode::affine8, 0, false, 0)})
    measure(c);
}

INSTANTIATE_TEST_SUITE_P(Coder, TurboQuantQuality, ::testing::Values("coder-dense", "coder-moe"), [](const auto& info) {
  std::string s = info.param;
  for (auto& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

}  // namespace
}  // namespace lmlab
