// TEMPORARY experiment (not part of the deliverable).
#include <gtest/gtest.h>
#include <cmath>
#include "fixtures.h"
#include "kv/turboquant/kv_layer_turbo.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"
#include "model/model_impl.h"
namespace lmlab { namespace {
struct Capture : KvLayerCache {
  std::unique_ptr<KvLayerCache> inner; std::vector<float> k, v; int64_t row;
  void append(const float* kk, const float* vv, int64_t n) override { k.insert(k.end(), kk, kk + n*row); v.insert(v.end(), vv, vv+n*row); inner->append(kk, vv, n);}  
  void attend(const float* q, int64_t n_q, int64_t p, const AttentionSpec& s, float* o) const override { inner->attend(q,n_q,p,s,o);} 
  int64_t n_tokens() const override { return inner->n_tokens(); }
  void truncate(int64_t n) override { inner->truncate(n);} uint64_t bytes() const override { return 0; }
};
TEST(ZZTqExperiment, Stats) {
  auto model = Model::load(test::model_dir("coder-dense"));
  SafetensorsFile golden(test::golden_path("coder-dense"));
  auto ids = test::golden_tensor<int32_t>(golden, "eval_ids_0");
  const auto& s = model->impl().transformer->spec();
  KvSequence seq; std::vector<Capture*> caps;
  for (size_t l = 0; l < s.layers.size(); ++l) { auto c = std::make_unique<Capture>(); TurboKvOptions o; o.hot_window = 1<<20; c->inner = make_turbo_kv_layer({s.n_heads, s.n_kv_heads, s.head_dim}, o); c->row = s.n_kv_heads*s.head_dim; caps.push_back(c.get()); seq.layers.push_back(std::move(c)); }
  std::vector<float> logits;
  model->impl().transformer->forward(ids.subspan(0, 512), 0, seq, false, logits);
  const int64_t d = s.head_dim, nkv = s.n_kv_heads, n = 512;
  for (size_t l = 0; l < caps.size(); ++l) for (int kv = 0; kv < 2; ++kv) for (int64_t h = 0; h < nkv; ++h) {
    auto& x = kv ? caps[l]->v : caps[l]->k;
    std::vector<double> mean(d, 0), var(d, 0); double e2 = 0;
    for (int64_t t = 0; t < n; ++t) for (int64_t i = 0; i < d; ++i) { double a = x[(t*nkv+h)*d+i]; mean[i] += a/n; e2 += a*a/n; }
    for (int64_t t = 0; t < n; ++t) for (int64_t i = 0; i < d; ++i) { double a = x[(t*nkv+h)*d+i]-mean[i]; var[i] += a*a/n; }
    double m2 = 0, vmax = 0, vsum = 0; for (int64_t i = 0; i < d; ++i) { m2 += mean[i]*mean[i]; vmax = std::max(vmax, var[i]); vsum += var[i]; }
    printf("layer %zu %s head %lld: E||x||^2 %.2f  ||mean||^2 %.2f (%.0f%%)  max var/avg var %.1f\n", l, kv?"V":"K", (long long)h, e2, m2, 100*m2/e2, vmax/(vsum/d));
  }
}
}}
namespace lmlab { namespace {
TEST(ZZTqExperiment, Ppl) {
  auto model = Model::load(test::model_dir("coder-dense"));
  SafetensorsFile golden(test::golden_path("coder-dense"));
  const auto& s = model->impl().transformer->spec();
  const int64_t vocab = model->info().vocab;
  double base = 0, tq = 0; int64_t cnt = 0, agree = 0;
  for (int i = 0; i < 4; ++i) {
    auto ids = test::golden_tensor<int32_t>(golden, "eval_ids_" + std::to_string(i));
    for (int pass = 0; pass < 2; ++pass) {
      KvSequence seq;
      if (pass == 0) seq = model->impl().make_sequence();
      else for (size_t l = 0; l < s.layers.size(); ++l) { if (getenv("TQX_LAYER") && atoi(getenv("TQX_LAYER")) != (int)l) { seq.layers.push_back(std::move(model->impl().make_sequence().layers[l])); continue; } TurboKvOptions o; o.hot_window = getenv("TQX_HOT") ? atoi(getenv("TQX_HOT")) : 0; o.seed += l + (getenv("TQX_SEED") ? 1000 * atoi(getenv("TQX_SEED")) : 0); o.center = !getenv("TQX_NOCENTER");
        { std::string k = getenv("TQX_K"), v = getenv("TQX_V"); if (k == "a4") o.mode = TurboKvOptions::Mode::affine4; else if (k == "a8") o.mode = TurboKvOptions::Mode::affine8; else { o.k_bits = k[0]-'0'; o.k_qjl = k.size() > 1; o.v_bits = v[0]-'0'; } } seq.layers.push_back(make_turbo_kv_layer({s.n_heads, s.n_kv_heads, s.head_dim}, o)); }
      std::vector<float> logits;
      static std::vector<int> am;
      if (pass == 0) am.clear();
      for (int64_t off = 0; off < 1023; off += 512) { int64_t m = std::min<int64_t>(512, 1023 - off);
        model->impl().transformer->forward(ids.subspan(off, m), off, seq, true, logits);
        for (int64_t t = 0; t < m; ++t) { std::span<const float> row(logits.data() + t*vocab, vocab); double lp = log_prob(row, ids[off+t+1]);
          int a = std::max_element(row.begin(), row.end()) - row.begin();
          if (pass == 0) { base -= lp; am.push_back(a); ++cnt; } else { tq -= lp; agree += am[off + t] == a; } } }
    }
  }
  printf("center=%d K=%s V=%s: ppl base %.4f tq %.4f (%+.2f%%) agree %.2f%%\n", !getenv("TQX_NOCENTER"), getenv("TQX_K"), getenv("TQX_V"), std::exp(base/cnt), std::exp(tq/cnt), 100*(std::exp((tq-base)/cnt)-1), 100.0*agree/cnt);
}
}}
