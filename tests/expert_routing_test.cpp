// Expert cache policy and next-layer prediction on *trained* routing: coder-moe-sparse-4bit (64 experts,
// top-4, trained with a load-balancing loss) run teacher-forced over its held-out eval ids. The routing is
// taken from a small qwen3_moe forward written here from the shared kernels (the Transformer keeps its
// routing to itself); that forward is first checked against the golden logits, so the trace is the model's.
// The hit rates of reuse vs LRU at 10/25/50% of the experts, and the prediction accuracy, are printed: for the next
// layer (what the streamers read ahead) and for 2 and 3 layers ahead (what a deeper read-ahead would get).
#include <gtest/gtest.h>

#include <cmath>
#include <fmt/format.h>

#include "arch/registry.h"
#include "experts/cache_policy.h"
#include "experts/expert_predict.h"
#include "fixtures.h"
#include "kernels/kernels.h"
#include "weights/linear.h"

namespace lmlab {
namespace {

struct Layer {
  std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;
  std::unique_ptr<Linear> q, k, v, o, router;
  std::vector<std::unique_ptr<Linear>> gate, up, down;  // [n_experts]
};

// Teacher-forced qwen3_moe forward recording, per token and MoE layer, the router's top-k and what the
// routers of the next kMaxAhead layers predict from this layer's input.
constexpr int kMaxAhead = 3;
class RoutingProbe {
 public:
  explicit RoutingProbe(const std::filesystem::path& dir)
      : spec_(load_model_spec(dir.string())), store_(WeightStore::open_dir(dir)) {
    const auto& s = spec_;
    auto lin = [&](const std::string& name, int64_t out, int64_t in, int64_t e = -1) {
      return load_linear(store_, name, out, in, s.quant_for(name), e);
    };
    embed_ = lin("model.embed_tokens", s.vocab, s.hidden);
    final_norm_ = load_vector_f32(store_, "model.norm.weight", s.hidden);
    const int64_t qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
    for (int64_t l = 0; l < s.n_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      Layer L;
      L.attn_norm = load_vector_f32(store_, p + s.names.attn_norm + ".weight", s.hidden);
      L.ffn_norm = load_vector_f32(store_, p + s.names.ffn_norm + ".weight", s.hidden);
      L.q_norm = load_vector_f32(store_, p + s.names.q_norm + ".weight", s.head_dim);
      L.k_norm = load_vector_f32(store_, p + s.names.k_norm + ".weight", s.head_dim);
      L.q = lin(p + "self_attn.q_proj", qd, s.hidden);
      L.k = lin(p + "self_attn.k_proj", kvd, s.hidden);
      L.v = lin(p + "self_attn.v_proj", kvd, s.hidden);
      L.o = lin(p + "self_attn.o_proj", s.hidden, qd);
      L.router = lin(p + s.names.router, s.n_experts, s.hidden);
      const std::string x = p + s.names.stacked_experts + ".";
      for (int64_t e = 0; e < s.n_experts; ++e) {
        L.gate.push_back(lin(x + s.names.gate, s.moe_intermediate, s.hidden, e));
        L.up.push_back(lin(x + s.names.up, s.moe_intermediate, s.hidden, e));
        L.down.push_back(lin(x + s.names.down, s.hidden, s.moe_intermediate, e));
      }
      layers_.push_back(std::move(L));
    }
  }

  const ModelSpec& spec() const { return spec_; }

  // chosen[t][l]: token t's top-k at layer l; predicted[t][l]: layer l's router on layer l-1's input;
  // ahead[d - 1][t][l]: layer l's router on layer l-d's input (d = 1..kMaxAhead; ahead[0] == predicted).
  using Trace = std::vector<std::vector<std::vector<int32_t>>>;
  std::vector<float> run(std::span<const int32_t> ids, Trace& chosen, Trace& predicted) {
    std::vector<Trace> ahead;
    return run(ids, chosen, predicted, ahead);
  }
  std::vector<float> run(std::span<const int32_t> ids, Trace& chosen, Trace& predicted, std::vector<Trace>& ahead) {
    const auto& s = spec_;
    const int64_t n = static_cast<int64_t>(ids.size()), H = s.hidden, E = s.n_experts, K = s.top_k;
    const int64_t qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim, I = s.moe_intermediate;
    chosen.assign(n, std::vector<std::vector<int32_t>>(s.n_layers));
    predicted.assign(n, std::vector<std::vector<int32_t>>(s.n_layers));
    ahead.assign(kMaxAhead, predicted);
    std::vector<float> x(n * H), h(n * H), y(n * H), q(n * qd), k(n * kvd), v(n * kvd), a(n * qd);
    for (int64_t t = 0; t < n; ++t) embed_->dequantize_row(ids[t], x.data() + t * H);
    std::vector<int32_t> pos(n);
    for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(t);
    const RopeSpec& rope = s.ropes[0];
    for (int64_t l = 0; l < s.n_layers; ++l) {
      Layer& L = layers_[l];
      kernels::rmsnorm(x.data(), L.attn_norm.data(), h.data(), n, H, s.norm_eps);
      L.q->forward(h.data(), q.data(), n);
      L.k->forward(h.data(), k.data(), n);
      L.v->forward(h.data(), v.data(), n);
      kernels::rmsnorm(q.data(), L.q_norm.data(), q.data(), n * s.n_heads, s.head_dim, s.norm_eps);
      kernels::rmsnorm(k.data(), L.k_norm.data(), k.data(), n * s.n_kv_heads, s.head_dim, s.norm_eps);
      kernels::rope({q.data(), n, s.n_heads, s.head_dim, rope.rot_dim, pos.data(), rope.inv_freq.data(),
                     rope.attention_scaling});
      kernels::rope({k.data(), n, s.n_kv_heads, s.head_dim, rope.rot_dim, pos.data(), rope.inv_freq.data(),
                     rope.attention_scaling});
      kernels::attention({q.data(), k.data(), v.data(), a.data(), n, n, s.n_heads, s.n_kv_heads, s.head_dim, 0, 0,
                          1.0f / std::sqrt(static_cast<float>(s.head_dim)), 0.0f, 0});
      L.o->forward(a.data(), y.data(), n);
      for (int64_t i = 0; i < n * H; ++i) x[i] += y[i];
      kernels::rmsnorm(x.data(), L.ffn_norm.data(), h.data(), n, H, s.norm_eps);
      std::vector<float> logits(n * E), w(n * K);
      std::vector<int32_t> sel(n * K);
      L.router->forward(h.data(), logits.data(), n);
      for (int64_t t = 0; t < n; ++t) {
        kernels::route_topk(logits.data() + t * E, E, K, s.norm_topk, sel.data() + t * K, w.data() + t * K);
        chosen[t][l].assign(sel.begin() + t * K, sel.begin() + (t + 1) * K);
        if (l + 1 < s.n_layers) predicted[t][l + 1] = predict_experts(*layers_[l + 1].router, h.data() + t * H, 1, K);
        for (int d = 1; d <= kMaxAhead && l + d < s.n_layers; ++d)
          ahead[d - 1][t][l + d] = predict_experts(*layers_[l + d].router, h.data() + t * H, 1, K);
      }
      std::fill(y.begin(), y.end(), 0.0f);
      std::vector<float> g(I), u(I), d(H);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < K; ++j) {
          const int32_t e = sel[t * K + j];
          L.gate[e]->forward(h.data() + t * H, g.data(), 1);
          L.up[e]->forward(h.data() + t * H, u.data(), 1);
          kernels::silu_mul(g.data(), u.data(), g.data(), I);
          L.down[e]->forward(g.data(), d.data(), 1);
          for (int64_t i = 0; i < H; ++i) y[t * H + i] += w[t * K + j] * d[i];
        }
      for (int64_t i = 0; i < n * H; ++i) x[i] += y[i];
    }
    kernels::rmsnorm(x.data(), final_norm_.data(), h.data(), n, H, s.norm_eps);
    std::vector<float> out(n * s.vocab);
    embed_->forward(h.data(), out.data(), n);  // tied head
    return out;
  }

 private:
  ModelSpec spec_;
  WeightStore store_;
  std::unique_ptr<Linear> embed_;
  std::vector<float> final_norm_;
  std::vector<Layer> layers_;
};

TEST(ExpertCachePolicy, TrainedRoutingReuseVsLruAndPrediction) {
  const std::string name = "coder-moe-sparse-4bit";
  RoutingProbe probe(test::model_dir(name));
  const auto& s = probe.spec();
  ASSERT_TRUE(s.tied_embeddings);
  SafetensorsFile golden(test::golden_path(name));
  {  // the probe is the model: its logits match the golden ones
    std::vector<std::vector<std::vector<int32_t>>> c, p;
    auto prompt = test::golden_tensor<int32_t>(golden, "prompt_0");
    auto want = test::golden_tensor<float>(golden, "logits_0");
    const std::vector<float> got = probe.run(prompt, c, p);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
    ASSERT_LE(worst, 2e-2) << "the routing probe does not reproduce the model";
  }
  const int64_t L = s.n_layers, E = s.n_experts, K = s.top_k;
  std::vector<std::vector<int32_t>> trace;  // decode order: token by token, layer by layer
  uint64_t predicted_right = 0, predicted_total = 0;
  uint64_t ahead_right[kMaxAhead] = {}, ahead_total[kMaxAhead] = {};
  for (int i = 0;; ++i) {
    auto ids = test::golden_tensor<int32_t>(golden, "eval_ids_" + std::to_string(i));
    if (ids.empty()) break;
    std::vector<std::vector<std::vector<int32_t>>> chosen, predicted;
    std::vector<RoutingProbe::Trace> ahead;
    probe.run(ids, chosen, predicted, ahead);
    for (size_t t = 0; t < chosen.size(); ++t)
      for (int64_t l = 0; l < L; ++l) {
        trace.push_back(chosen[t][l]);
        if (l == 0) continue;
        for (int32_t e : predicted[t][l]) predicted_right += std::count(chosen[t][l].begin(), chosen[t][l].end(), e);
        predicted_total += K;
        for (int d = 1; d <= kMaxAhead && d <= l; ++d) {
          for (int32_t e : ahead[d - 1][t][l]) ahead_right[d - 1] += std::count(chosen[t][l].begin(), chosen[t][l].end(), e);
          ahead_total[d - 1] += K;
        }
      }
  }
  ASSERT_GE(trace.size(), static_cast<size_t>(L * 1024));
  const double accuracy = static_cast<double>(predicted_right) / predicted_total;
  std::cout << fmt::format("[ ROUTING  ] {}: {} tokens; next-layer prediction (next router on this layer's input) "
                           "finds {:.1f}% of the experts (chance {:.1f}%)\n",
                           name, trace.size() / L, 100 * accuracy, 100.0 * K / E);
  EXPECT_GT(accuracy, 2.0 * K / E);
  EXPECT_EQ(ahead_right[0], predicted_right) << "one layer ahead is the next-layer prediction";
  double previous = 1.0;
  for (int d = 1; d <= kMaxAhead; ++d) {
    const double a = static_cast<double>(ahead_right[d - 1]) / ahead_total[d - 1];
    std::cout << fmt::format("[ ROUTING  ] {} layer(s) ahead (that layer's router on this layer's input): {:.1f}%\n", d,
                             100 * a);
    EXPECT_GT(a, 2.0 * K / E) << d << " layers ahead";
    EXPECT_LE(a, previous + 0.02) << "a guess from further back should not be better";
    previous = a;
  }
  for (double frac : {0.10, 0.25, 0.50}) {
    const int64_t cap = static_cast<int64_t>(frac * L * E);
    const double lru = simulate_expert_cache(CachePolicyKind::lru, cap, L, E, trace);
    const double reuse = simulate_expert_cache(CachePolicyKind::reuse, cap, L, E, trace);
    std::cout << fmt::format("[ ROUTING  ] cache {:.0f}% of experts: hit rate lru {:.3f}, reuse {:.3f}\n", frac * 100,
                             lru, reuse);
    EXPECT_GE(reuse, lru - 0.01) << "at " << frac;
  }
}

}  // namespace
}  // namespace lmlab
