// A random MLX affine-quantized weight (bf16 scales and biases shaped like real ones) and activations, shared
// by the affine matmul benchmarks.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "kernels/matmul_affine.h"
#include "util/half.h"

namespace lmlab::bench {

using kernels::AffineWeight;
using kernels::ScaleType;

struct QuantProblem {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales, biases;
  std::vector<float> x, y;
  AffineWeight w;

  QuantProblem(int bits, int64_t rows, int64_t cols, int group_size, int64_t n) {
    uint32_t state = 12345;
    auto next = [&] { return state = state * 1664525u + 1013904223u; };
    packed.resize(static_cast<size_t>(rows * cols * bits / 32));
    for (auto& v : packed) v = next();
    const size_t groups = static_cast<size_t>(rows * cols / group_size);
    scales.resize(groups);
    biases.resize(groups);
    for (size_t i = 0; i < groups; ++i) {
      const float s = 0.001f + static_cast<float>(next() >> 20) * 1e-6f;
      scales[i] = lmlab::f32_to_bf16(s);
      biases[i] = lmlab::f32_to_bf16(-s * static_cast<float>(1 << (bits - 1)));
    }
    x.resize(static_cast<size_t>(n * cols));
    for (auto& v : x) v = static_cast<float>(next() >> 8) / 16777216.0f - 0.5f;
    y.assign(static_cast<size_t>(n * rows), 0.0f);
    w = AffineWeight{packed.data(), scales.data(), biases.data(), ScaleType::bf16, bits, group_size, rows, cols};
  }
};

// Times matmul(MatmulAffineArgs) on a random rows x cols weight (benchmark args: rows, cols, group size) and n
// tokens; bytes/s = the bytes one pass over the weight reads, items/s = FLOPs (2 * n * rows * cols).
template <class Matmul>
void run_affine_bench(benchmark::State& state, int bits, int64_t n, Matmul matmul) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const int gs = static_cast<int>(state.range(2));
  QuantProblem p(bits, rows, cols, gs, n);
  for (auto _ : state) {
    matmul(kernels::MatmulAffineArgs{p.w, p.x.data(), p.y.data(), n});
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.w.bytes()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * rows * cols);
}

}  // namespace lmlab::bench
