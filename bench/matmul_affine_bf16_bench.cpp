// The MLX affine prefill GEMM on vdpbf16ps (kernels/cpu/matmul_affine_bf16.h) beside the f32 tile kernel
// (kernels/matmul_affine.h) on the 0.9B qwen3 synth's shapes at 512 tokens, 4 bits, group 64; items/s = FLOPs
// (2 * n * rows * cols). Run both in one invocation, e.g. --benchmark_filter='BM_prefill512_q4'; the _1t
// variants run one thread.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_affine_bf16.h"
#include "kernels/kernels.h"
#include "kernels/matmul_affine.h"
#include "quant_problem.h"
#include "util/thread_pool.h"

namespace {

void BM_prefill512_q4_bf16(benchmark::State& state) {
  if (!lmlab::kernels::cpu::has_avx512_bf16()) {
    state.SkipWithError("this CPU lacks AVX512_BF16");
    return;
  }
  lmlab::bench::run_affine_bench(state, 4, 512, [](const lmlab::kernels::MatmulAffineArgs& a) {
    lmlab::kernels::cpu::matmul_affine_bf16(a);
  });
}

void BM_prefill512_q4_f32(benchmark::State& state) {
  lmlab::bench::run_affine_bench(state, 4, 512, [](const lmlab::kernels::MatmulAffineArgs& a) {
    lmlab::kernels::matmul_affine(a);
  });
  state.SetLabel(lmlab::kernels::cpu::isa_name());
}

// One thread, CPU time: steadier than the 2-thread wall time on a shared machine.
template <void (*Fn)(benchmark::State&)>
void one_thread(benchmark::State& state) {
  const int previous = lmlab::ThreadPool::global().size();
  lmlab::ThreadPool::set_global_threads(1);
  Fn(state);
  lmlab::ThreadPool::set_global_threads(previous);
}
void BM_prefill512_q4_bf16_1t(benchmark::State& state) { one_thread<&BM_prefill512_q4_bf16>(state); }
void BM_prefill512_q4_f32_1t(benchmark::State& state) { one_thread<&BM_prefill512_q4_f32>(state); }

// q / o, k / v, gate / up, down of the 0.9B synth (hidden 2048, kv 512, intermediate 6144).
#define LMLAB_Q4_SHAPES Args({2048, 2048, 64})->Args({512, 2048, 64})->Args({6144, 2048, 64})->Args({2048, 6144, 64})
BENCHMARK(BM_prefill512_q4_bf16)->LMLAB_Q4_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill512_q4_f32)->LMLAB_Q4_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill512_q4_bf16_1t)->LMLAB_Q4_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_prefill512_q4_f32_1t)->LMLAB_Q4_SHAPES->Unit(benchmark::kMillisecond);

}  // namespace
