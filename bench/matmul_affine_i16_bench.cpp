// Integer-dot affine matmul (kernels/matmul_affine_i16.h) beside the f32-activation kernel on the same shapes
// (BM_matvec_q4 / _q8, BM_prefill*_q4 in matmul_affine_bench.cpp): run both in one invocation, e.g.
//   lmlab_bench --benchmark_filter='BM_(matvec|prefill)' --benchmark_repetitions=3
// bytes/s = the bytes one pass over the weight reads (packed values + bf16 scales and biases); the activation
// quantization is inside the timed call, as in a forward. items/s = FLOPs (2 * n * rows * cols).
// Shapes: 14336 x 4096 (Llama-3-8B's MLP up), 8192 x 16384 (64 MiB at 4 bits), 3072 x 1024 and 1024 x 3072
// (the qwen3 0.9B synth's MLP up and down).
#include <benchmark/benchmark.h>

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "kernels/matmul_affine_i16.h"
#include "quant_problem.h"

namespace {

void run_int(benchmark::State& state, int bits, int64_t n) {
  lmlab::bench::run_affine_bench(state, bits, n, [](const lmlab::kernels::MatmulAffineArgs& a) {
    lmlab::kernels::matmul_affine_int(a);
  });
  const bool vnni = lmlab::kernels::cpu::active_isa() == lmlab::kernels::cpu::Isa::avx512 &&
                    lmlab::kernels::cpu::has_avx512_vnni();
  state.SetLabel(vnni ? "avx512vnni" : lmlab::kernels::cpu::isa_name());
}

void BM_matvec_q4_int16(benchmark::State& state) { run_int(state, 4, 1); }
void BM_matvec_q8_int16(benchmark::State& state) { run_int(state, 8, 1); }
void BM_prefill16_q4_int16(benchmark::State& state) { run_int(state, 4, 16); }
void BM_prefill128_q4_int16(benchmark::State& state) { run_int(state, 4, 128); }

BENCHMARK(BM_matvec_q4_int16)
    ->Args({8192, 16384, 64})
    ->Args({14336, 4096, 64})
    ->Args({14336, 4096, 32})
    ->Args({3072, 1024, 64})
    ->Args({1024, 3072, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_matvec_q8_int16)->Args({8192, 16384, 64})->Args({14336, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill16_q4_int16)->Args({4096, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill128_q4_int16)->Args({4096, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
