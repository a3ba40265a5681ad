// Decode attention (one query token) over a long context: TurboQuant cache vs uncompressed baselines.
//   BM_attn_f32_kernel  lmlab::kernels::attention over contiguous f32 K/V (the engine's optimised f32 kernel)
//   BM_attn_f32_paged   KvLayerBlocked with the f32 codec (the engine's default KV cache: f32 blocks of 32
//                       positions, read in place)
//   BM_attn_f16         KvLayerBlocked with the f16 codec (--kv-mode f16): fp16 rows in the same blocks, decoded by
//                       F16C into the same blocked score / accumulate kernels, so it differs from BM_attn_turbo_*
//                       only in the storage format
//   BM_attn_turbo_*     KvLayerBlocked with TurboQuant codecs: k5v4 (the default: 5-bit K, 4-bit V), k4v4, k3qjl_v3 (4.25 / 3.125
//                       bits/dim, the SwiftLM / paper headline format), affine4 (int4 baseline); every token
//                       compressed
// Args: context tokens, head_dim, query heads, KV heads, layers. One iteration is one decode step through
// `layers` independent layer caches (each attended once, as a model does per token): with 8 layers the KV
// does not stay in the CPU caches between visits to a layer, as in a real model; with 1 layer it does (a
// compute-bound, warm-cache view). items/s = layers/s (time per layer = 1 / items/s). bytes/s counts the KV
// bytes the layers hold (read once per step), comparable with the copy roofline of matmul_bench's BM_read_sum.
// Every benchmark uses ThreadPool::global() (all cores).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels/kernels.h"
#include "kv/kv_block_pool.h"
#include "kv/kv_layer_blocked.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "kv/turboquant/rng.h"
#include "util/thread_pool.h"

namespace {

using lmlab::KvGeometry;
using lmlab::ThreadPool;

struct Shape {
  int64_t ctx, d, n_heads, n_kv, layers;
  explicit Shape(const benchmark::State& s)
      : ctx(s.range(0)), d(s.range(1)), n_heads(s.range(2)), n_kv(s.range(3)), layers(s.range(4)) {}
  KvGeometry geo() const { return {n_heads, n_kv, d}; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(d)); }
};

// Unit-variance uniform values (timing does not depend on the distribution; this is fast to make).
std::vector<float> random_vec(int64_t n, uint64_t seed) {
  lmlab::turboquant::SplitMix64 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>((rng.uniform() * 2.0 - 1.0) * 1.7320508);
  return v;
}

void report(benchmark::State& state, const Shape& s, uint64_t kv_bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kv_bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.layers));
  state.counters["kv_MiB"] = static_cast<double>(kv_bytes) / (1 << 20);
  state.counters["threads"] = ThreadPool::global().size();
}

// ------------------------------------------------------------------------------------------- f32 baselines

void BM_attn_f32_kernel(benchmark::State& state) {
  const Shape s(state);
  std::vector<std::vector<float>> k, v;
  for (int64_t l = 0; l < s.layers; ++l) {
    k.push_back(random_vec(s.ctx * s.n_kv * s.d, 1 + 2 * l));
    v.push_back(random_vec(s.ctx * s.n_kv * s.d, 2 + 2 * l));
  }
  const auto q = random_vec(s.n_heads * s.d, 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    for (int64_t l = 0; l < s.layers; ++l) {
      lmlab::kernels::attention({q.data(), k[l].data(), v[l].data(), out.data(), 1, s.ctx, s.n_heads, s.n_kv, s.d,
                                 s.ctx - 1, 0, s.scale(), 0.0f, 0});
      benchmark::DoNotOptimize(out.data());
    }
  }
  report(state, s, static_cast<uint64_t>(2 * s.ctx * s.n_kv * s.d * s.layers) * sizeof(float));
}

// Appends ctx random tokens to each layer in chunks of 1024.
template <typename Layer>
void fill(Layer& layer, const Shape& s, uint64_t seed) {
  for (int64_t i = 0; i < s.ctx; i += 1024) {
    const int64_t n = std::min<int64_t>(1024, s.ctx - i);
    const auto k = random_vec(n * s.n_kv * s.d, seed + 2 * i), v = random_vec(n * s.n_kv * s.d, seed + 2 * i + 1);
    layer.append(k.data(), v.data(), n);
  }
}

// Runs one decode step through every layer per iteration.
template <typename Layers>
void run_layers(benchmark::State& state, const Shape& s, const Layers& layers) {
  const auto q = random_vec(s.n_heads * s.d, 3);
  std::vector<float> out(q.size());
  const lmlab::AttentionSpec spec{s.scale(), 0.0f, 0};
  uint64_t bytes = 0;
  for (const auto& l : layers) bytes += l->bytes();
  for (auto _ : state) {
    for (const auto& l : layers) {
      l->attend(q.data(), 1, s.ctx - 1, spec, out.data());
      benchmark::DoNotOptimize(out.data());
    }
  }
  report(state, s, bytes);
}

// `layers` layers of one spec in blocks of 32 positions (the engine's default --kv-block-tokens), filled.
void run_spec(benchmark::State& state, const Shape& s, const lmlab::KvLayerSpec& spec) {
  lmlab::KvBlockPool pool(32);
  std::vector<std::unique_ptr<lmlab::KvLayerBlocked>> layers;
  for (int64_t l = 0; l < s.layers; ++l) {
    layers.push_back(std::make_unique<lmlab::KvLayerBlocked>(pool, spec));
    fill(*layers.back(), s, 1000 * l);
  }
  run_layers(state, s, layers);
}

void BM_attn_f32_paged(benchmark::State& state) {
  const Shape s(state);
  run_spec(state, s, lmlab::f32_kv_layer_spec(s.geo(), 0));
}

// ------------------------------------------------------------------------------------------- TurboQuant

void run_turbo(benchmark::State& state, const lmlab::TurboKvOptions& opt) {
  const Shape s(state);
  run_spec(state, s, lmlab::turbo_kv_layer_spec(s.geo(), opt));
}

void BM_attn_f16(benchmark::State& state) {
  lmlab::TurboKvOptions opt;
  opt.mode = lmlab::TurboKvOptions::Mode::f16;
  run_turbo(state, opt);
}

void BM_attn_turbo_k5v4(benchmark::State& state) {
  run_turbo(state, lmlab::TurboKvOptions{});
}

void BM_attn_turbo_k4v4(benchmark::State& state) {
  lmlab::TurboKvOptions opt;
  opt.k_bits = 4;
  run_turbo(state, opt);
}

void BM_attn_turbo_k3qjl_v3(benchmark::State& state) {
  lmlab::TurboKvOptions opt;
  opt.k_bits = 3;
  opt.k_qjl = true;
  opt.v_bits = 3;
  run_turbo(state, opt);
}

void BM_attn_turbo_affine4(benchmark::State& state) {
  lmlab::TurboKvOptions opt;
  opt.mode = lmlab::TurboKvOptions::Mode::affine4;
  run_turbo(state, opt);
}

// context x (head_dim, query heads, KV heads): 8/2 x 128 (synth head_dim 128), 8/2 x 64, coder-dense's 4/2 x 64;
// 8 layers (cold KV, as in a model), and 1 layer at 32K (warm).
void attn_args(benchmark::internal::Benchmark* b) {
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {{128, 8, 2}, {64, 8, 2}, {64, 4, 2}};
  for (int64_t ctx : {4096, 16384, 32768})
    for (auto [d, h, kv] : shapes) b->Args({ctx, d, h, kv, 8});
  for (auto [d, h, kv] : shapes) b->Args({32768, d, h, kv, 1});
  b->ArgNames({"ctx", "d", "heads", "kv", "layers"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_attn_f32_kernel)->Apply(attn_args);
BENCHMARK(BM_attn_f32_paged)->Apply(attn_args);
BENCHMARK(BM_attn_f16)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_k5v4)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_k4v4)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_k3qjl_v3)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_affine4)->Apply(attn_args);

}  // namespace
