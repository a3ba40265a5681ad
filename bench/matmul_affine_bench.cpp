// Affine-quantized (MLX 4 / 8-bit) matmul benchmarks beside the copy roofline (BM_memcpy, BM_read_sum in
// matmul_bench.cpp). All use ThreadPool::global() (every core).
//   BM_matvec_q4 / _q8  n = 1 (decode); bytes/s = the bytes one pass reads: packed weights + bf16 scales and
//                       biases, so the figure reads directly against the memory-copy rate.
//   BM_prefill*_q4      n tokens at once; items/s = FLOPs (2 * n * rows * cols).
// Args: rows, cols, group size. 14336 x 4096 is Llama-3-8B's MLP up projection (29 MiB at 4 bits); 8192 x
// 16384 at 4 bits is 64 MiB (well beyond the last-level cache).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "kernels/matmul_affine.h"
#include "quant_problem.h"

namespace {

void run_affine(benchmark::State& state, int bits, int64_t n) {
  lmlab::bench::run_affine_bench(state, bits, n, [](const lmlab::kernels::MatmulAffineArgs& a) {
    lmlab::kernels::matmul_affine(a);
  });
  state.SetLabel(lmlab::kernels::cpu::isa_name());
}

void BM_matvec_q4(benchmark::State& state) { run_affine(state, 4, 1); }
void BM_matvec_q8(benchmark::State& state) { run_affine(state, 8, 1); }
void BM_prefill16_q4(benchmark::State& state) { run_affine(state, 4, 16); }
void BM_prefill128_q4(benchmark::State& state) { run_affine(state, 4, 128); }

BENCHMARK(BM_matvec_q4)
    ->Args({8192, 16384, 64})
    ->Args({14336, 4096, 64})
    ->Args({14336, 4096, 32})
    ->Args({14336, 4096, 128})
    ->Args({3072, 1024, 64})
    ->Args({1024, 3072, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_matvec_q8)->Args({8192, 16384, 64})->Args({14336, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill16_q4)->Args({4096, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill128_q4)->Args({4096, 4096, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
