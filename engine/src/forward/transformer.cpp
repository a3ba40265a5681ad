// The shared decoder forward. Per layer (pre-norm residual; gemma3 adds the post_* sandwich norms):
//   x += [post_attn_norm] attention(attn_norm(x));  x += [post_ffn_norm] mlp_or_moe(ffn_norm(x))
#include "forward/transformer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "experts/expert_streamer.h"
#include "kernels/kernels.h"
#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab {

namespace {
std::string layer_prefix(int64_t l) { return fmt::format("model.layers.{}.", l); }

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

// y = W x over n rows whose first `decode` rows are decode tokens of separate sequences: those take the kernel
// a lone decode token takes (Linear::forward_decode), the prompt rows after them the prefill kernel.
void linear_rows(const Linear& w, const float* x, float* y, int64_t n, int64_t decode) {
  if (decode > 0) w.forward_decode(x, y, decode);
  if (n > decode) w.forward(x + decode * w.in_features(), y + decode * w.out_features(), n - decode);
}

// The leading rows that are single tokens (forward_batch puts the decode steps first).
int64_t decode_rows(std::span<const BatchRows> rows) {
  int64_t d = 0;
  while (d < static_cast<int64_t>(rows.size()) && rows[d].n == 1) ++d;
  return d;
}

int64_t total_rows(std::span<const BatchRows> rows) {
  int64_t n = 0;
  for (const BatchRows& r : rows) n += r.n;
  return n;
}
// Per-thread buffers for the layer blocks' intermediates, reused across layers and calls. Allocated per layer,
// they were malloc'd (mmap'd past 128 KiB), page-faulted and zeroed for every layer of every prefill chunk: ~40%
// of coder-dense's prefill time in perf. Every user writes its buffer whole before reading it.
enum class Scratch { q, k, v, attn, gate, up, router, expert_in, expert_out, slot_out, count };

float* scratch(Scratch which, int64_t n) {
  thread_local std::array<std::vector<float>, static_cast<size_t>(Scratch::count)> buffers;
  std::vector<float>& b = buffers[static_cast<size_t>(which)];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// The RoPE cos / sin table of a forward's rows (kernels::rope_table), kept per calling thread and recomputed only
// when the positions or the RoPE differ from those of an earlier layer: once per forward and RoPE, not twice per
// layer. Compared by value, so a table never outlives what it was computed from.
const float* rope_cos_sin(const RopeSpec& rope, const std::vector<int32_t>& positions) {
  struct Entry {
    std::vector<int32_t> positions;
    std::vector<float> inv_freq, table;
    int64_t rot_dim;
    float scaling;
  };
  thread_local std::vector<Entry> cache;  // one entry per RoPE in use (gemma3: local and global)
  for (const Entry& e : cache)
    if (e.rot_dim == rope.rot_dim && e.scaling == rope.attention_scaling && e.inv_freq == rope.inv_freq &&
        e.positions == positions)
      return e.table.data();
  if (cache.size() >= 4) cache.erase(cache.begin());
  Entry& e = cache.emplace_back(Entry{positions, rope.inv_freq, {}, rope.rot_dim, rope.attention_scaling});
  const int64_t n = static_cast<int64_t>(positions.size());
  e.table.resize(static_cast<size_t>(n * (rope.rot_dim / 2) * 2));
  kernels::rope_table({nullptr, n, 0, 0, rope.rot_dim, positions.data(), rope.inv_freq.data(), rope.attention_scaling},
                      e.table.data());
  return e.table.data();
}

}  // namespace

Transformer::Transformer(ModelSpec spec, WeightStore store, const TransformerOptions& options)
    : spec_(std::move(spec)), store_(std::move(store)) {
  if (options.stream_experts) {
    if (spec_.n_experts == 0)
      throw Error(ErrorKind::invalid_input, std::string(option_flag("stream_experts")), spec_.arch + " is not a mixture-of-experts model");
    streamer_ = std::make_unique<ExpertStreamer>(store_, spec_, options.experts);
  }
  load_weights();
}

Transformer::~Transformer() = default;

MlpWeights Transformer::load_mlp(const std::string& gate, const std::string& up, const std::string& down,
                                 int64_t inter, int64_t expert) const {
  auto lin = [&](const std::string& name, int64_t out, int64_t in) {
    return load_linear(store_, name, out, in, spec_.quant_for(name), expert);
  };
  return {lin(gate, inter, spec_.hidden), lin(up, inter, spec_.hidden), lin(down, spec_.hidden, inter)};
}

void Transformer::load_weights() {
  const auto& s = spec_;
  const auto& n = s.names;
  const float off = s.norm_weight_offset;
  auto lin = [&](const std::string& name, int64_t out, int64_t in) {
    return load_linear(store_, name, out, in, s.quant_for(name));
  };
  embed_ = lin("model.embed_tokens", s.vocab, s.hidden);
  if (!s.tied_embeddings) lm_head_ = lin("lm_head", s.vocab, s.hidden);
  (lm_head_ ? *lm_head_ : *embed_).keep_prefill_exact();
  final_norm_ = load_vector_f32(store_, "model.norm.weight", s.hidden, off);
  const int64_t q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  layers_.resize(static_cast<size_t>(s.n_layers));
  for (int64_t l = 0; l < s.n_layers; ++l) {
    LayerWeights& w = layers_[l];
    const std::string p = layer_prefix(l);
    auto norm = [&](const std::string& name, int64_t dim) {
      return name.empty() ? std::vector<float>{} : load_vector_f32(store_, p + name + ".weight", dim, off);
    };
    w.attn_norm = norm(n.attn_norm, s.hidden);
    w.post_attn_norm = norm(n.post_attn_norm, s.hidden);
    w.ffn_norm = norm(n.ffn_norm, s.hidden);
    w.post_ffn_norm = norm(n.post_ffn_norm, s.hidden);
    w.q_norm = norm(n.q_norm, s.head_dim);
    w.k_norm = norm(n.k_norm, s.head_dim);
    w.q = lin(p + "self_attn.q_proj", q_dim, s.hidden);
    w.k = lin(p + "self_attn.k_proj", kv_dim, s.hidden);
    w.v = lin(p + "self_attn.v_proj", kv_dim, s.hidden);
    w.o = lin(p + "self_attn.o_proj", s.hidden, q_dim);
    if (s.layers[l].moe) {
      w.moe.router = lin(p + n.router, s.n_experts, s.hidden);
      w.moe.router->keep_prefill_exact();
      // Streamed experts stay on disk: not a byte of them is mapped in or touched here.
      for (int64_t e = 0; e < s.n_experts && !streamer_; ++e) {
        const ExpertTensorNames x = expert_tensor_names(n, store_, p, e);
        w.moe.experts.push_back(load_mlp(x.gate, x.up, x.down, s.moe_intermediate, x.stacked ? e : -1));
      }
    } else {
      const std::string m = p + n.mlp + ".";
      w.mlp = load_mlp(m + n.gate, m + n.up, m + n.down, s.intermediate);
    }
  }
  // Weight bytes as stored (the mapped files), for memory plans and reports.
  weight_bytes_ = store_.total_bytes();
}

// The projections run over every sequence's rows at once; RoPE takes each row's own position; K/V are appended
// to and attention reads from each sequence's own cache.
void Transformer::attention_block(const LayerWeights& w, const LayerSpec& ls, int64_t layer, const float* h,
                                  std::span<const BatchRows> rows, float* out) const {
  const auto& s = spec_;
  const int64_t q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  const int64_t n = total_rows(rows), d = decode_rows(rows);
  float* q = scratch(Scratch::q, n * q_dim);
  float* k = scratch(Scratch::k, n * kv_dim);
  float* v = scratch(Scratch::v, n * kv_dim);
  float* attn = scratch(Scratch::attn, n * q_dim);
  linear_rows(*w.q, h, q, n, d);
  linear_rows(*w.k, h, k, n, d);
  linear_rows(*w.v, h, v, n, d);
  if (!w.q_norm.empty()) kernels::rmsnorm(q, w.q_norm.data(), q, n * s.n_heads, s.head_dim, s.norm_eps);
  if (!w.k_norm.empty()) kernels::rmsnorm(k, w.k_norm.data(), k, n * s.n_kv_heads, s.head_dim, s.norm_eps);
  const RopeSpec& rope = s.ropes[ls.rope];
  std::vector<int32_t> positions(n);
  for (const BatchRows& r : rows)
    for (int64_t t = 0; t < r.n; ++t) positions[r.row0 + t] = static_cast<int32_t>(r.pos0 + t);
  const float* cos_sin = rope_cos_sin(rope, positions);
  kernels::rope({q, n, s.n_heads, s.head_dim, rope.rot_dim, positions.data(), rope.inv_freq.data(),
                 rope.attention_scaling, cos_sin});
  kernels::rope({k, n, s.n_kv_heads, s.head_dim, rope.rot_dim, positions.data(), rope.inv_freq.data(),
                 rope.attention_scaling, cos_sin});
  for (const BatchRows& r : rows) {
    KvLayerCache& kv = *r.cache->layers[layer];
    kv.append(k + r.row0 * kv_dim, v + r.row0 * kv_dim, r.n);
    kv.attend(q + r.row0 * q_dim, r.n, r.pos0, attention_spec(s, ls), attn + r.row0 * q_dim);
  }
  linear_rows(*w.o, attn, out, n, d);
}

void Transformer::mlp_block(const Linear& gate, const Linear& up, const Linear& down, const float* h, int64_t n,
                            int64_t decode, float* out) const {
  const int64_t inter = gate.out_features();
  float* g = scratch(Scratch::gate, n * inter);
  float* u = scratch(Scratch::up, n * inter);
  linear_rows(gate, h, g, n, decode);
  linear_rows(up, h, u, n, decode);
  if (spec_.activation == Activation::silu) kernels::silu_mul(g, u, g, n * inter);
  else kernels::gelu_tanh_mul(g, u, g, n * inter);
  linear_rows(down, g, out, n, decode);
}

// Routes every token, runs each selected expert once over all the tokens that chose it (in memory, or as
// the streamer delivers it), then sums each token's experts in expert-index order (as HF does), so the
// result does not depend on the order in which streamed experts arrive.
void Transformer::moe_block(int64_t layer, const MoeWeights& w, const float* h, int64_t n, int64_t decode,
                            float* out) const {
  const auto& s = spec_;
  const int64_t E = s.n_experts, K = s.top_k, H = s.hidden;
  // Every slot belongs to one chosen expert, which writes it: slot_out is written whole before the sum reads it.
  float* logits = scratch(Scratch::router, n * E);
  float* slot_out = scratch(Scratch::slot_out, n * K * H);
  float* xin = scratch(Scratch::expert_in, n * H);  // an expert takes each token at most once: m <= n rows
  float* xout = scratch(Scratch::expert_out, n * H);
  std::vector<float> weights(n * K);
  std::vector<int32_t> chosen(n * K);
  linear_rows(*w.router, h, logits, n, decode);
  for (int64_t t = 0; t < n; ++t)
    kernels::route_topk(logits + t * E, E, K, s.norm_topk, chosen.data() + t * K, weights.data() + t * K);

  std::vector<int64_t> slots;
  auto run_expert = [&](int32_t e, const Linear& gate, const Linear& up, const Linear& down) {
    slots.clear();
    for (int64_t i = 0; i < n * K; ++i)
      if (chosen[i] == e) slots.push_back(i);
    const int64_t m = static_cast<int64_t>(slots.size());
    // slots are in token order, so the expert's decode rows come first too
    const int64_t m_decode = std::count_if(slots.begin(), slots.end(), [&](int64_t i) { return i / K < decode; });
    for (int64_t r = 0; r < m; ++r) std::copy(h + slots[r] / K * H, h + (slots[r] / K + 1) * H, xin + r * H);
    mlp_block(gate, up, down, xin, m, m_decode, xout);
    for (int64_t r = 0; r < m; ++r) std::copy(xout + r * H, xout + (r + 1) * H, slot_out + slots[r] * H);
  };

  if (streamer_) {
    ExpertBatch batch = streamer_->request(static_cast<int32_t>(layer), chosen);
    // Read ahead: the next MoE layer's router applied to this layer's input predicts its experts.
    if (streamer_->options().expert_predict_next) {
      const int32_t next = streamer_->next_moe_layer(static_cast<int32_t>(layer));
      if (next >= 0) {
        std::vector<float> next_logits(n * E), next_w(n * K);
        std::vector<int32_t> predicted(n * K);
        linear_rows(*layers_[next].moe.router, h, next_logits.data(), n, decode);
        for (int64_t t = 0; t < n; ++t)
          kernels::route_topk(next_logits.data() + t * E, E, K, s.norm_topk, predicted.data() + t * K,
                              next_w.data() + t * K);
        streamer_->prefetch(next, predicted);
      }
    }
    while (ExpertHandle eh = batch.next()) {
      const ExpertWeights& ew = eh.weights();
      run_expert(eh.expert(), *ew.gate, *ew.up, *ew.down);
    }
  } else {
    std::vector<char> used(static_cast<size_t>(E), 0);
    for (int32_t e : chosen) used[e] = 1;
    for (int32_t e = 0; e < E; ++e)
      if (used[e]) run_expert(e, *w.experts[e].gate, *w.experts[e].up, *w.experts[e].down);
  }

  std::vector<int64_t> order(static_cast<size_t>(K));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t k = 0; k < K; ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return chosen[t * K + a] < chosen[t * K + b]; });
    float* o = out + t * H;
    std::fill(o, o + H, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t slot = t * K + order[k];
      const float wk = weights[slot];
      const float* y = slot_out + slot * H;
      for (int64_t i = 0; i < H; ++i) o[i] += wk * y[i];
    }
  }
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
                          std::vector<float>& logits) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::vector<float> x(n * spec_.hidden);
  embed(tokens, x.data());
  run_layers(x.data(), n, pos0, cache, 0, spec_.n_layers);
  head(x.data(), n, all_logits, logits);
}

void Transformer::embed(std::span<const int32_t> tokens, float* x) const {
  const auto& s = spec_;
  const int64_t n = static_cast<int64_t>(tokens.size()), H = s.hidden;
  if (n == 0) throw Error(ErrorKind::invalid_input, "forward", "no tokens to process");
  for (int32_t id : tokens)
    if (id < 0 || id >= s.vocab)
      throw Error(ErrorKind::invalid_input, "tokens", fmt::format("token id {} is outside the vocabulary [0, {})", id,
                                                                  s.vocab));
  for (int64_t t = 0; t < n; ++t) {
    embed_->dequantize_row(tokens[t], x + t * H);
    if (s.embed_scale != 1.0f)
      for (int64_t i = 0; i < H; ++i) x[t * H + i] *= s.embed_scale;
  }
}

void Transformer::forward_batch(std::span<const SequenceStep> steps, std::vector<float>& logits) const {
  const int64_t H = spec_.hidden, b = static_cast<int64_t>(steps.size());
  // Rows: the decode steps (one token each) first, then the prompt chunks (see linear_rows).
  std::vector<int64_t> order(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) order[i] = i;
  std::stable_partition(order.begin(), order.end(), [&](int64_t i) { return steps[i].tokens.size() == 1; });
  std::vector<BatchRows> rows;
  std::vector<int32_t> tokens;
  for (int64_t i : order) {
    const SequenceStep& st = steps[i];
    if (st.tokens.empty()) throw Error(ErrorKind::invalid_input, "forward", "a sequence with no tokens to process");
    rows.push_back({st.cache, static_cast<int64_t>(tokens.size()), static_cast<int64_t>(st.tokens.size()), st.pos0});
    tokens.insert(tokens.end(), st.tokens.begin(), st.tokens.end());
  }
  std::vector<float> x(tokens.size() * H);
  embed(tokens, x.data());
  run_layers(x.data(), rows, 0, spec_.n_layers);
  // The head runs on each sequence's last row only, in the steps' order.
  std::vector<float> last(b * H);
  for (int64_t j = 0; j < b; ++j) {
    const float* row = x.data() + (rows[j].row0 + rows[j].n - 1) * H;
    std::copy(row, row + H, last.begin() + order[j] * H);
  }
  project_out(last.data(), b, true, logits);
}

void Transformer::run_layers(float* x, int64_t n, int64_t pos0, KvSequence& cache, int64_t l0, int64_t l1) const {
  const BatchRows rows{&cache, 0, n, pos0};
  run_layers(x, std::span<const BatchRows>(&rows, 1), l0, l1);
}

void Transformer::run_layers(float* x, std::span<const BatchRows> rows, int64_t l0, int64_t l1) const {
  const auto& s = spec_;
  const int64_t H = s.hidden, n = total_rows(rows), d = decode_rows(rows);
  std::vector<float> h(n * H), y(n * H);
  for (int64_t l = l0; l < l1; ++l) {
    const LayerWeights& w = layers_[l];
    kernels::rmsnorm(x, w.attn_norm.data(), h.data(), n, H, s.norm_eps);
    attention_block(w, s.layers[l], l, h.data(), rows, y.data());
    if (!w.post_attn_norm.empty()) kernels::rmsnorm(y.data(), w.post_attn_norm.data(), y.data(), n, H, s.norm_eps);
    add_inplace(x, y.data(), n * H);
    kernels::rmsnorm(x, w.ffn_norm.data(), h.data(), n, H, s.norm_eps);
    if (s.layers[l].moe) moe_block(l, w.moe, h.data(), n, d, y.data());
    else mlp_block(*w.mlp.gate, *w.mlp.up, *w.mlp.down, h.data(), n, d, y.data());
    if (!w.post_ffn_norm.empty()) kernels::rmsnorm(y.data(), w.post_ffn_norm.data(), y.data(), n, H, s.norm_eps);
    add_inplace(x, y.data(), n * H);
  }
}

void Transformer::head(const float* x, int64_t n, bool all_logits, std::vector<float>& logits) const {
  const int64_t n_out = all_logits ? n : 1;
  project_out(x + (n - n_out) * spec_.hidden, n_out, !all_logits, logits);
}

void Transformer::project_out(const float* x, int64_t n, bool one_per_sequence, std::vector<float>& logits) const {
  const auto& s = spec_;
  std::vector<float> h(n * s.hidden);
  kernels::rmsnorm(x, final_norm_.data(), h.data(), n, s.hidden, s.norm_eps);
  logits.resize(static_cast<size_t>(n * s.vocab));
  const Linear& out = lm_head_ ? *lm_head_ : *embed_;
  if (one_per_sequence) out.forward_decode(h.data(), logits.data(), n);
  else out.forward(h.data(), logits.data(), n);
  if (s.final_softcap > 0)
    for (auto& v : logits) v = s.final_softcap * std::tanh(v / s.final_softcap);
}

}  // namespace lmlab
