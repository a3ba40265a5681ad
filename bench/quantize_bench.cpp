// The MLX affine quantizer of `lmlab convert` (convert/quantize.h), one thread, on seeded normal weights:
//   BM_quantize_affine      the shipped fit (vector candidate evaluation)
//   BM_quantize_affine_ref  the original scalar search (convert/quantize_ref.cpp)
// Args: bits, group size, fit (0 = minmax, 1 = mse). bytes/s = bf16 input bytes (2 per weight), the figure
// `lmlab convert` reports as "MB/s of input tensors" (per core here; convert runs the rows on every core).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "convert/quantize.h"
#include "convert/quantize_ref.h"
#include "kernels/cpu/isa.h"

namespace {

template <bool kRef>
void run_quantize(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0)), gs = static_cast<int>(state.range(1));
  const auto method = state.range(2) ? lmlab::QuantMethod::mse : lmlab::QuantMethod::minmax;
  const int64_t rows = kRef && state.range(2) ? 16 : 256, cols = 4096;  // the reference mse is ~40x slower
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (auto& v : w) v = d(rng);
  std::vector<uint32_t> packed(rows * cols * bits / 32);
  std::vector<uint16_t> s(rows * cols / gs), b(s.size());
  for (auto _ : state) {
    if constexpr (kRef)
      lmlab::quantize_affine_ref(w.data(), rows, cols, bits, gs, lmlab::kernels::ScaleType::bf16, packed.data(),
                                 s.data(), b.data(), method);
    else
      lmlab::quantize_affine(w.data(), rows, cols, bits, gs, lmlab::kernels::ScaleType::bf16, packed.data(), s.data(),
                             b.data(), method);
    benchmark::DoNotOptimize(packed.data());
  }
  state.SetBytesProcessed(state.iterations() * rows * cols * 2);
  state.SetLabel(kRef ? "ref" : lmlab::kernels::cpu::isa_name(lmlab::kernels::cpu::active_isa()));
}

void BM_quantize_affine(benchmark::State& state) { run_quantize<false>(state); }
void BM_quantize_affine_ref(benchmark::State& state) { run_quantize<true>(state); }

BENCHMARK(BM_quantize_affine)->Args({4, 64, 1})->Args({4, 32, 1})->Args({4, 128, 1})->Args({8, 64, 1})->Args({4, 64, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize_affine_ref)->Args({4, 64, 1})->Args({4, 64, 0})->Unit(benchmark::kMillisecond);

}  // namespace
