// Decode attention (one query token) over a long context: TurboQuant cache vs uncompressed baselines.
//   BM_attn_f32_kernel  lmlab::kernels::attention over contiguous f32 K/V (the engine's optimised f32 kernel)
//   BM_attn_f32_paged   KvLayerPaged (the engine's default KV cache: f32 blocks of 32 positions)
//   BM_attn_f16         f16 K/V, head-major blocks of 64 positions, converted block by block (F16C) and fed to the
//                       same blocked score / accumulate kernels and key-range splitting as the TurboQuant cache,
//                       so it differs from BM_attn_turbo_* only in the storage format
//   BM_attn_turbo_*     KvLayerTurbo: k4v4 (the default: 4-bit K and V), k3qjl_v3 (4.25 / 3.125 bits/dim, the
//                       SwiftLM / paper headline format), affine4 (int4 baseline); hot window 256
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
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"  // <immintrin.h> with GCC 12's false -Wmaybe-uninitialized silenced
#include "kernels/kernels.h"
#include "kv/kv_block_pool.h"
#include "kv/kv_layer_paged.h"
#include "kv/turboquant/kv_layer_turbo.h"
#include "kv/turboquant/rng.h"
#include "kv/turboquant/tq_kernels.h"
#include "util/half.h"
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

void BM_attn_f32_paged(benchmark::State& state) {
  const Shape s(state);
  lmlab::KvBlockPool pool(32, s.n_kv * s.d);
  std::vector<std::unique_ptr<lmlab::KvLayerPaged>> layers;
  for (int64_t l = 0; l < s.layers; ++l) {
    layers.push_back(std::make_unique<lmlab::KvLayerPaged>(pool, s.geo(), 0));
    fill(*layers.back(), s, 1000 * l);
  }
  run_layers(state, s, layers);
}

// ------------------------------------------------------------------------------------------- f16 baseline

constexpr int64_t kBlock = 64;

// f16 -> f32 of n values (n a multiple of 16).
void f16_to_f32_scalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = lmlab::f16_to_f32(src[i]);
}
#if LMLAB_X86
LMLAB_TARGET_AVX512 void f16_to_f32_avx512(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
}
LMLAB_TARGET_AVX2 void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
}
#endif

// K and V of one layer in f16, [n_kv][ctx][d] (head-major, so a block of one head is contiguous).
class F16Cache {
 public:
  F16Cache(const Shape& s, uint64_t seed) : s_(s), k_(static_cast<size_t>(s.n_kv * s.ctx * s.d)), v_(k_.size()) {
    const auto k = random_vec(s.ctx * s.n_kv * s.d, seed), v = random_vec(s.ctx * s.n_kv * s.d, seed + 1);
    for (int64_t t = 0; t < s.ctx; ++t)
      for (int64_t h = 0; h < s.n_kv; ++h)
        for (int64_t i = 0; i < s.d; ++i) {
          k_[(h * s.ctx + t) * s.d + i] = lmlab::f32_to_f16(k[(t * s.n_kv + h) * s.d + i]);
          v_[(h * s.ctx + t) * s.d + i] = lmlab::f32_to_f16(v[(t * s.n_kv + h) * s.d + i]);
        }
    convert_ = &f16_to_f32_scalar;
#if LMLAB_X86
    const auto isa = lmlab::kernels::cpu::active_isa();
    if (isa == lmlab::kernels::cpu::Isa::avx512)
      convert_ = &f16_to_f32_avx512;
    else if (isa == lmlab::kernels::cpu::Isa::avx2)
      convert_ = &f16_to_f32_avx2;
#endif
  }
  uint64_t bytes() const {
    return (k_.size() + v_.size()) * sizeof(uint16_t);
  }

  // One query token at the last position: q, out [n_heads][d].
  void attend(const float* q, int64_t, int64_t, const lmlab::AttentionSpec&, float* out) const {
    const int64_t G = s_.n_heads / s_.n_kv, d = s_.d, n_blocks = (s_.ctx + kBlock - 1) / kBlock;
    ThreadPool& pool = ThreadPool::global();
    const int64_t n_split =
        std::max<int64_t>(1, std::min<int64_t>((4 * pool.size() + s_.n_kv - 1) / s_.n_kv, n_blocks / 4));
    const int64_t part = G * (d + 2);
    std::vector<float> partial(static_cast<size_t>(s_.n_kv * n_split * part));
    const auto& kern = lmlab::turboquant::tq_kernels();
    pool.parallel_for(s_.n_kv * n_split, [&](int64_t i0, int64_t i1) {
      std::vector<float> tk(static_cast<size_t>(kBlock * d)), tv(tk.size()), sc(static_cast<size_t>(G * kBlock));
      std::vector<float> alpha(static_cast<size_t>(G));
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t kh = item / n_split, sp = item % n_split;
        float* m = partial.data() + item * part;
        float* l = m + G;
        float* acc = l + G;
        std::fill(m, m + G, -std::numeric_limits<float>::infinity());
        std::fill(l, l + G, 0.0f);
        std::fill(acc, acc + G * d, 0.0f);
        const int64_t b0 = n_blocks * sp / n_split, b1 = n_blocks * (sp + 1) / n_split;
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t p0 = b * kBlock, nb = std::min(kBlock, s_.ctx - p0);
          convert_(k_.data() + (kh * s_.ctx + p0) * d, tk.data(), nb * d);
          kern.scores(q + kh * G * d, d, G, tk.data(), d, nb, d, sc.data(), kBlock);
          for (int64_t r = 0; r < G; ++r) {
            float* sr = sc.data() + r * kBlock;
            float mx = m[r];
            for (int64_t j = 0; j < nb; ++j) mx = std::max(mx, sr[j] *= s_.scale());
            alpha[r] = m[r] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(m[r] - mx);
            l[r] = l[r] * alpha[r] + kern.exp_sum(sr, nb, mx);
            m[r] = mx;
          }
          convert_(v_.data() + (kh * s_.ctx + p0) * d, tv.data(), nb * d);
          kern.accumulate(acc, d, G, alpha.data(), sc.data(), kBlock, tv.data(), d, nb, d);
        }
      }
    });
    for (int64_t h = 0; h < s_.n_heads; ++h) {
      const int64_t kh = h / G, r = h % G;
      float mx = -std::numeric_limits<float>::infinity(), l = 0.0f;
      for (int64_t sp = 0; sp < n_split; ++sp) mx = std::max(mx, partial[(kh * n_split + sp) * part + r]);
      float* o = out + h * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const float* p = partial.data() + (kh * n_split + sp) * part;
        const float w = std::exp(p[r] - mx);
        l += w * p[G + r];
        for (int64_t i = 0; i < d; ++i) o[i] += w * p[2 * G + r * d + i];
      }
      for (int64_t i = 0; i < d; ++i) o[i] /= l;
    }
  }

 private:
  Shape s_;
  std::vector<uint16_t> k_, v_;
  void (*convert_)(const uint16_t*, float*, int64_t);
};

void BM_attn_f16(benchmark::State& state) {
  const Shape s(state);
  std::vector<std::unique_ptr<F16Cache>> layers;
  for (int64_t l = 0; l < s.layers; ++l) layers.push_back(std::make_unique<F16Cache>(s, 1000 * l));
  run_layers(state, s, layers);
}

// ------------------------------------------------------------------------------------------- TurboQuant

void run_turbo(benchmark::State& state, const lmlab::TurboKvOptions& opt) {
  const Shape s(state);
  std::vector<std::unique_ptr<lmlab::KvLayerTurbo>> layers;
  for (int64_t l = 0; l < s.layers; ++l) {
    layers.push_back(std::make_unique<lmlab::KvLayerTurbo>(s.geo(), opt));
    fill(*layers.back(), s, 1000 * l);
  }
  run_layers(state, s, layers);
}

void BM_attn_turbo_k4v4(benchmark::State& state) {
  run_turbo(state, lmlab::TurboKvOptions{});
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
BENCHMARK(BM_attn_turbo_k4v4)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_k3qjl_v3)->Apply(attn_args);
BENCHMARK(BM_attn_turbo_affine4)->Apply(attn_args);

}  // namespace
