// Int8-activation 4-bit matmul (kernels/matmul_affine_i8.h) beside the int16 one (matmul_affine_i16.h) for
// decode and continuous-batching widths: what an extra row of a batched step costs. Run both in one invocation:
//   lmlab_bench --benchmark_filter='BM_batch_q4' --benchmark_repetitions=3
// Args: rows, cols, group size, tokens. 6144 x 2048 and 2048 x 6144 are the qwen3 0.9B synth's MLP up and
// down; 14336 x 4096 is Llama-3-8B's MLP up. bytes/s = the weight bytes one call reads (as in
// matmul_affine_bench.cpp); the activation quantization is inside the timed call, as in a forward.
// BM_batch_q4_int8_panels: the same kernel on the weights repacked into 16-row panels (kernels/affine_panels.h,
// repacked before timing, as at load); compare with BM_batch_q4_int8 in one run, interleaved:
//   lmlab_bench --benchmark_filter='BM_batch_q4_int8' --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/matmul_affine_i16.h"
#include "kernels/matmul_affine_i8.h"
#include "quant_problem.h"

namespace {

void label(benchmark::State& state) {
  const bool vnni = lmlab::kernels::cpu::active_isa() == lmlab::kernels::cpu::Isa::avx512 &&
                    lmlab::kernels::cpu::has_avx512_vnni();
  state.SetLabel(vnni ? "avx512vnni" : lmlab::kernels::cpu::isa_name(lmlab::kernels::cpu::active_isa()));
}

template <class Matmul>
void run(benchmark::State& state, Matmul matmul) {
  lmlab::bench::run_affine_bench(state, 4, state.range(3), matmul);
  label(state);
}

void BM_batch_q4_int8(benchmark::State& state) {
  run(state, [](const lmlab::kernels::MatmulAffineArgs& a) { lmlab::kernels::cpu::matmul_affine_int8(a); });
}
void BM_batch_q4_int8_panels(benchmark::State& state) {
  const int64_t n = state.range(3);
  lmlab::bench::QuantProblem p(4, state.range(0), state.range(1), static_cast<int>(state.range(2)), n);
  const lmlab::kernels::AffinePanels panels = lmlab::kernels::repack_affine_panels(p.w);
  for (auto _ : state) {
    lmlab::kernels::cpu::matmul_affine_int8_panels(panels, p.x.data(), p.y.data(), n);
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.w.bytes()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * p.w.rows * p.w.cols);
  label(state);
}
// The load-time repack itself (bytes/s of the stored weight); LMLAB_ISA=avx2 times the word-by-word copy.
void BM_affine_panels_repack(benchmark::State& state) {
  lmlab::bench::QuantProblem p(4, state.range(0), state.range(1), static_cast<int>(state.range(2)), 1);
  for (auto _ : state) benchmark::DoNotOptimize(lmlab::kernels::repack_affine_panels(p.w).data.get());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.w.bytes()));
  label(state);
}
void BM_batch_q4_int16(benchmark::State& state) {
  run(state, [](const lmlab::kernels::MatmulAffineArgs& a) { lmlab::kernels::matmul_affine_int(a); });
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {1, 2, 4, 8, 16}) {
    b->Args({6144, 2048, 64, n});
    b->Args({2048, 6144, 64, n});
  }
  for (int64_t n : {1, 8}) {
    b->Args({14336, 4096, 64, n});
    b->Args({8192, 16384, 64, n});  // 64 MiB: beyond the last-level cache, as a model's weights are
  }
}

BENCHMARK(BM_batch_q4_int8)->Apply(shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_batch_q4_int8_panels)->Apply(shapes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_affine_panels_repack)->Args({6144, 2048, 64, 1})->Args({8192, 16384, 64, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_batch_q4_int16)->Apply(shapes)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
