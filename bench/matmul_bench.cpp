// Matmul micro-benchmarks beside the memory roofline. All use ThreadPool::global() (every core).
//   BM_memcpy     copy of a 512 MiB buffer; bytes/s counts the bytes read once (writes not counted).
//   BM_read_sum   read-only streaming sum of the same buffer with vector loads (four streams per thread):
//                 the roofline a matvec (which only reads its weights) should be compared with.
//   BM_matvec_*   n = 1 (decode) Y = W.x; bytes/s = weight bytes, so it reads directly against the two above.
//   BM_prefill_*  n tokens at once; items/s = FLOPs (2 * n * rows * cols).
//   BM_gemm_bf16/rows/cols/n      bf16 prefill at model shapes (coder-dense: hidden 256, intermediate 768, kv 128;
//                                 the 0.9B qwen3 synth: hidden 2048, intermediate 6144, kv 512), 512 tokens: the
//                                 vdpbf16ps GEMM where the CPU has AVX512_BF16; BM_gemm_bf16_fma the same with it
//                                 switched off (the avx512 tier's f32 FMA tiles). The _1t variants run one thread
//                                 and time its CPU seconds (steadier than wall time when other work shares the cores).
//   BM_gemm_bf16_i16(_1t)         the same shapes on the int16 GEMM of large matrices (MatmulArgs::int16_prefill,
//                                 kernels/cpu/matmul_half_i16.h) where the CPU has AVX-512 VNNI.
//   BM_gemm_f16(_i16)             f16 weights: the f32 FMA tiles, and the same int16 GEMM.
// Buffers are written before timing so page faults are not measured.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_half_i16.h"
#include "kernels/kernels.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace {

using lmlab::ThreadPool;
using lmlab::kernels::MatmulArgs;
using lmlab::kernels::WeightType;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kStreamBytes = 512 * kMiB;
constexpr size_t kBlockBytes = 1 * kMiB;  // unit of work handed to the pool

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

Buffer alloc_filled(size_t bytes, uint8_t value) {
  Buffer b(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
  std::memset(b.get(), value, bytes);
  return b;
}

void BM_memcpy(benchmark::State& state) {
  Buffer src = alloc_filled(kStreamBytes, 1), dst = alloc_filled(kStreamBytes, 2);
  const int64_t n_blocks = kStreamBytes / kBlockBytes;
  for (auto _ : state) {
    ThreadPool::global().parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
      std::memcpy(dst.get() + b0 * kBlockBytes, src.get() + b0 * kBlockBytes, (b1 - b0) * kBlockBytes);
    });
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kStreamBytes);
  state.SetLabel(std::to_string(ThreadPool::global().size()) + " threads");
}
BENCHMARK(BM_memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

uint64_t sum_words_scalar(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__)
// 256-bit loads from four streams a quarter of the range apart (a matvec also streams several weight rows at
// once, which keeps more cache misses in flight than one sequential stream); n is a multiple of 16 words.
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint64_t* p, size_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  const size_t quarter = n / 16;  // in 256-bit vectors
  const auto* v0 = reinterpret_cast<const __m256i*>(p);
  const __m256i *v1 = v0 + quarter, *v2 = v1 + quarter, *v3 = v2 + quarter;
  for (size_t i = 0; i < quarter; i += 2) {
    s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_load_si256(v0 + i), _mm256_load_si256(v0 + i + 1)));
    s1 = _mm256_add_epi64(s1, _mm256_add_epi64(_mm256_load_si256(v1 + i), _mm256_load_si256(v1 + i + 1)));
    s2 = _mm256_add_epi64(s2, _mm256_add_epi64(_mm256_load_si256(v2 + i), _mm256_load_si256(v2 + i + 1)));
    s3 = _mm256_add_epi64(s3, _mm256_add_epi64(_mm256_load_si256(v3 + i), _mm256_load_si256(v3 + i + 1)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

void BM_read_sum(benchmark::State& state) {
  Buffer src = alloc_filled(kStreamBytes, 1);
  const int64_t n_blocks = kStreamBytes / kBlockBytes;
  const size_t words_per_block = kBlockBytes / 8;
  auto* sum_words = &sum_words_scalar;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) sum_words = &sum_words_avx2;
#endif
  std::vector<uint64_t> partial(static_cast<size_t>(n_blocks));
  for (auto _ : state) {
    ThreadPool::global().parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
      partial[b0] = sum_words(reinterpret_cast<const uint64_t*>(src.get() + b0 * kBlockBytes), (b1 - b0) * words_per_block);
    });
    benchmark::DoNotOptimize(partial.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kStreamBytes);
}
BENCHMARK(BM_read_sum)->Unit(benchmark::kMillisecond)->UseRealTime();

size_t elem_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

// Weights of small random values in the storage type; x of the same kind, both written before timing.
struct Problem {
  Buffer w;
  std::vector<float> x, y;
  MatmulArgs args;

  Problem(WeightType type, int64_t rows, int64_t cols, int64_t n) {
    const size_t count = static_cast<size_t>(rows * cols);
    w = Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, (count * elem_bytes(type) + 63) / 64 * 64)));
    uint32_t state = 12345;
    auto next = [&] {
      state = state * 1664525u + 1013904223u;
      return static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
    };
    // A short repeating pattern keeps setup of 256 MiB quick; the values do not affect the speed.
    std::vector<float> pattern(4099);
    for (auto& v : pattern) v = next();
    for (size_t i = 0; i < count; ++i) {
      const float v = pattern[i % pattern.size()];
      if (type == WeightType::f32) reinterpret_cast<float*>(w.get())[i] = v;
      else if (type == WeightType::f16) reinterpret_cast<uint16_t*>(w.get())[i] = lmlab::f32_to_f16(v);
      else reinterpret_cast<uint16_t*>(w.get())[i] = lmlab::f32_to_bf16(v);
    }
    x.resize(static_cast<size_t>(n * cols));
    for (auto& v : x) v = next();
    y.assign(static_cast<size_t>(n * rows), 0.0f);
    args = MatmulArgs{type, w.get(), rows, cols, x.data(), y.data(), n};
  }
};

void run_matmul(benchmark::State& state, WeightType type, int64_t n, bool int16_prefill = false) {
  const int64_t rows = state.range(0), cols = state.range(1);
  if (n == 0) n = state.range(2);  // BM_gemm_*: rows, cols, tokens
  Problem p(type, rows, cols, n);
  p.args.int16_prefill = int16_prefill;
  for (auto _ : state) {
    lmlab::kernels::matmul(p.args);
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  const int64_t weight_bytes = rows * cols * static_cast<int64_t>(elem_bytes(type));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * weight_bytes);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * rows * cols);
  state.SetLabel(std::string(lmlab::kernels::cpu::isa_name()) +
                 (lmlab::kernels::cpu::matmul_uses_half_i16(p.args) ? "+i16"
                  : type == WeightType::bf16 && n > 1 && lmlab::kernels::cpu::avx512_bf16_enabled() ? "+bf16" : ""));
}

void BM_matvec_bf16(benchmark::State& state) { run_matmul(state, WeightType::bf16, 1); }
void BM_matvec_f16(benchmark::State& state) { run_matmul(state, WeightType::f16, 1); }
void BM_matvec_f32(benchmark::State& state) { run_matmul(state, WeightType::f32, 1); }
void BM_prefill16_bf16(benchmark::State& state) { run_matmul(state, WeightType::bf16, 16); }
void BM_prefill128_bf16(benchmark::State& state) { run_matmul(state, WeightType::bf16, 128); }
void run_gemm(benchmark::State& state, bool dot, int threads, bool int16_prefill = false) {
  const bool had = lmlab::kernels::cpu::avx512_bf16_enabled();
  const int previous = ThreadPool::global().size();
  if (!dot) lmlab::kernels::cpu::set_avx512_bf16(false);
  if (threads > 0) ThreadPool::set_global_threads(threads);
  run_matmul(state, WeightType::bf16, 0, int16_prefill);
  if (threads > 0) ThreadPool::set_global_threads(previous);
  lmlab::kernels::cpu::set_avx512_bf16(had);
}
void BM_gemm_bf16(benchmark::State& state) { run_gemm(state, true, 0); }
void BM_gemm_bf16_fma(benchmark::State& state) { run_gemm(state, false, 0); }
void BM_gemm_bf16_1t(benchmark::State& state) { run_gemm(state, true, 1); }
void BM_gemm_bf16_fma_1t(benchmark::State& state) { run_gemm(state, false, 1); }
void BM_gemm_bf16_i16(benchmark::State& state) { run_gemm(state, true, 0, true); }
void BM_gemm_bf16_i16_1t(benchmark::State& state) { run_gemm(state, true, 1, true); }
void BM_gemm_f16(benchmark::State& state) { run_matmul(state, WeightType::f16, 0); }
void BM_gemm_f16_i16(benchmark::State& state) { run_matmul(state, WeightType::f16, 0, true); }

// 8192 x 16384 bf16 = 256 MiB (far beyond cache); 4096 x 4096 bf16 = 32 MiB (mid: about the L3 size).
BENCHMARK(BM_matvec_bf16)->Args({8192, 16384})->Args({4096, 4096})->Args({6144, 2048})->Args({2048, 6144})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_matvec_f16)->Args({8192, 16384})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_matvec_f32)->Args({8192, 8192})->Unit(benchmark::kMillisecond)->UseRealTime();
// Rows, cols, tokens.
#define LMLAB_GEMM_SHAPES                                                                                  \
  Args({256, 256, 512})->Args({128, 256, 512})->Args({768, 256, 512})->Args({256, 768, 512})                 \
      ->Args({2048, 2048, 512})->Args({512, 2048, 512})->Args({6144, 2048, 512})->Args({2048, 6144, 512})    \
      ->Args({2048, 2048, 64})->Args({2048, 2048, 128})
BENCHMARK(BM_gemm_bf16)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_bf16_fma)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_bf16_1t)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_bf16_fma_1t)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_bf16_i16)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_bf16_i16_1t)->LMLAB_GEMM_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_f16)->Args({2048, 2048, 512})->Args({6144, 2048, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f16_i16)->Args({2048, 2048, 512})->Args({6144, 2048, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
#undef LMLAB_GEMM_SHAPES
BENCHMARK(BM_prefill16_bf16)->Args({4096, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill128_bf16)->Args({4096, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// The one main() of lmlab_bench (bench/CMakeLists.txt links benchmark::benchmark, not benchmark_main):
// other bench/*.cpp files only register benchmarks.
BENCHMARK_MAIN();
