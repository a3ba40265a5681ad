// Every cpu:: kernel against its ref:: version over odd shapes, once per instruction set this machine has
// (scalar, avx2, avx512 through cpu::force_isa; an ISA the CPU lacks is a visible GTEST_SKIP), plus the
// bf16 / f16 conversion helpers of util/half.h. Tolerances come from tests/tolerance.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "rope_inputs.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_bf16.h"
#include "kernels/kernels.h"
#include "isa_test.h"
#include "tolerance.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab {
namespace {

using kernels::WeightType;
using test::expect_close;
using test::tolerance;

using test::random_vector;

const char* type_name(WeightType t) { return t == WeightType::f32 ? "f32" : t == WeightType::f16 ? "f16" : "bf16"; }

// ------------------------------------------------------------------------------------------- ISA fixture

class KernelCpu : public test::IsaTest {};

INSTANTIATE_TEST_SUITE_P(Kernel, KernelCpu, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

struct MatmulCase {
  int64_t rows, cols, n;
};

// The tolerance for cpu::matmul(a): f32 rounding, or the bf16 GEMV / GEMM's split activations where they run.
double matmul_tolerance(const kernels::MatmulArgs& a) {
  return kernels::cpu::matmul_uses_bf16_dot(a) ? test::bf16x2_activation_tolerance(a.cols)
                                                : tolerance(WeightType::f32, a.cols);
}

void check_matmul(WeightType type, const MatmulCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << type_name(type) << " rows " << c.rows << " cols " << c.cols << " n " << c.n
                                    << (kernels::cpu::avx512_bf16_enabled() ? "" : " (no vdpbf16ps)"));
  const auto wf = random_vector(static_cast<size_t>(c.rows * c.cols), seed);
  std::vector<float> w32;
  std::vector<uint16_t> w16;
  const void* w = nullptr;
  if (type == WeightType::f32) {
    w32 = wf;
    w = w32.data();
  } else {
    for (float v : wf) w16.push_back(type == WeightType::f16 ? f32_to_f16(v) : f32_to_bf16(v));
    w = w16.data();
  }
  const auto x = random_vector(static_cast<size_t>(c.n * c.cols), seed + 1);
  std::vector<float> got(static_cast<size_t>(c.n * c.rows), std::nanf("")), want(got.size());
  kernels::MatmulArgs a{type, w, c.rows, c.cols, x.data(), got.data(), c.n};
  kernels::cpu::matmul(a);
  const double tol = matmul_tolerance(a);
  a.y = want.data();
  kernels::ref::matmul(a);
  expect_close(got, want, tol, "matmul");
}

TEST_P(KernelCpu, MatmulSmallShapes) {
  uint32_t seed = 1;
  for (WeightType type : {WeightType::f32, WeightType::f16, WeightType::bf16})
    for (int64_t rows : {1, 3, 4, 5, 8})
      for (int64_t cols : {1, 7, 16, 17, 33, 129})
        for (int64_t n : {1, 2, 3, 4, 5}) check_matmul(type, {rows, cols, n}, seed++);
}

TEST_P(KernelCpu, MatmulLargeShapes) {
  // Several threads' chunks, column blocks past 1024 with a tail, token blocks past 64, row tails.
  const MatmulCase cases[] = {{300, 1000, 1}, {300, 1000, 17}, {67, 2100, 70}, {1001, 257, 3}, {128, 1024, 64},
                              {6, 4096, 9}};
  uint32_t seed = 100;
  for (WeightType type : {WeightType::f32, WeightType::f16, WeightType::bf16})
    for (const auto& c : cases) check_matmul(type, c, seed++);
}

// Where the CPU has AVX512_BF16 the avx512 tier's bf16 decode and prefill go to the vdpbf16ps GEMV / GEMM; its f32
// FMA paths (what CPUs without AVX512_BF16 run) are switched back on here so that they stay tested.
TEST_P(KernelCpu, MatmulBf16WithoutDotProduct) {
  const bool had = kernels::cpu::avx512_bf16_enabled();
  kernels::cpu::set_avx512_bf16(false);
  const MatmulCase cases[] = {{5, 129, 8}, {300, 1000, 17}, {67, 2100, 70}, {128, 1024, 64}, {300, 1000, 1},
                              {7, 33, 1}};
  uint32_t seed = 300;
  for (const auto& c : cases) check_matmul(WeightType::bf16, c, seed++);
  kernels::cpu::set_avx512_bf16(had);
}

TEST_P(KernelCpu, MatmulOddThreadCount) {
  const int previous = ThreadPool::global().size();
  ThreadPool::set_global_threads(3);
  check_matmul(WeightType::bf16, {203, 517, 1}, 7);
  check_matmul(WeightType::f16, {203, 517, 6}, 8);
  check_matmul(WeightType::bf16, {203, 517, 29}, 9);
  ThreadPool::set_global_threads(previous);
}

// ------------------------------------------------------------------------------------------- bf16 GEMM

// cpu::matmul_bf16_gemm called directly (any n, not only n >= kBf16GemmMinTokens), where the CPU has
// AVX512_BF16; rows, columns and tokens around its blocking (16-row panels, 2-panel tiles, 12-token tiles,
// 256-column reduction blocks, 512-row packed blocks), odd columns, 1 and 3 threads.
class Bf16Gemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::cpu::has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512_BF16 (vdpbf16ps)";
  }
  static void check(const MatmulCase& c, uint32_t seed, const std::vector<float>& x_override = {}) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " cols " << c.cols << " n " << c.n);
    const auto wf = random_vector(static_cast<size_t>(c.rows * c.cols), seed);
    std::vector<uint16_t> w;
    for (float v : wf) w.push_back(f32_to_bf16(v));
    const auto x = x_override.empty() ? random_vector(static_cast<size_t>(c.n * c.cols), seed + 1) : x_override;
    std::vector<float> got(static_cast<size_t>(c.n * c.rows), std::nanf("")), want(got.size());
    kernels::MatmulArgs a{WeightType::bf16, w.data(), c.rows, c.cols, x.data(), got.data(), c.n};
    kernels::cpu::matmul_bf16_gemm(a);
    a.y = want.data();
    kernels::ref::matmul(a);
    expect_close(got, want, test::bf16x2_activation_tolerance(c.cols), "matmul_bf16_gemm");
  }
};

TEST_F(Bf16Gemm, SmallShapes) {
  uint32_t seed = 1;
  for (int64_t rows : {1, 15, 16, 17, 33, 47})
    for (int64_t cols : {1, 2, 3, 31, 32, 33, 257})
      for (int64_t n : {1, 5, 11, 12, 13, 25}) check({rows, cols, n}, seed++);
}

TEST_F(Bf16Gemm, LargeShapes) {
  const MatmulCase cases[] = {{300, 2100, 70}, {1001, 257, 30}, {64, 4096, 24}, {600, 1025, 37}, {129, 513, 512}};
  uint32_t seed = 500;
  for (const auto& c : cases) check(c, seed++);
  const int previous = ThreadPool::global().size();
  for (int threads : {1, 3}) {
    ThreadPool::set_global_threads(threads);
    check({1100, 301, 20}, seed++);  // one thread: a chunk of 69 panels, three packed W blocks
    check({203, 517, 29}, seed++);
  }
  ThreadPool::set_global_threads(previous);
}

// Activations of every scale the split handles (hi + lo keeps 16 bits at any exponent), zeros, and an infinity
// (lo must be 0 there, not inf - inf).
TEST_F(Bf16Gemm, ActivationRange) {
  const int64_t rows = 20, cols = 65, n = 13;
  auto x = random_vector(static_cast<size_t>(n * cols), 7);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c) x[t * cols + c] *= std::ldexp(1.0f, static_cast<int>((t * 7 + c) % 41) - 20);
  for (int64_t c = 0; c < cols; c += 3) x[2 * cols + c] = 0.0f;
  check({rows, cols, n}, 11, x);
  x[5 * cols + 4] = std::numeric_limits<float>::infinity();
  check({rows, cols, n}, 11, x);
}

TEST_P(KernelCpu, Rmsnorm) {
  uint32_t seed = 1;
  for (int64_t rows : {1, 3, 17})
    for (int64_t dim : {1, 7, 33, 129, 1000, 4096}) {
      SCOPED_TRACE(::testing::Message() << "rows " << rows << " dim " << dim);
      const auto x = random_vector(static_cast<size_t>(rows * dim), seed++, 3.0f);
      const auto w = random_vector(static_cast<size_t>(dim), seed++);
      std::vector<float> got(x.size()), want(x.size());
      kernels::cpu::rmsnorm(x.data(), w.data(), got.data(), rows, dim, 1e-6f);
      kernels::ref::rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f);
      expect_close(got, want, tolerance(WeightType::f32, dim), "rmsnorm");
    }
}

TEST_P(KernelCpu, Rope) {
  uint32_t seed = 1;
  struct Case {
    int64_t n_tokens, n_heads, head_dim, rot_dim;
    float scaling;
  };
  const Case cases[] = {{1, 1, 8, 8, 1.0f},    {3, 4, 64, 64, 1.0f},  {17, 2, 128, 128, 1.0f}, {5, 3, 128, 64, 1.0f},
                        {4, 2, 14, 6, 1.0f},   {9, 4, 256, 256, 1.2f}, {2, 1, 34, 34, 1.0f}};
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "tokens " << c.n_tokens << " heads " << c.n_heads << " head_dim "
                                      << c.head_dim << " rot_dim " << c.rot_dim);
    auto x = random_vector(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), seed++);
    const test::RopeInputs in = test::rope_inputs(c.n_tokens, c.rot_dim);
    auto got = x, want = x;
    kernels::RopeArgs a{got.data(), c.n_tokens, c.n_heads, c.head_dim, c.rot_dim, in.positions.data(), in.inv_freq.data(), c.scaling};
    kernels::cpu::rope(a);
    a.x = want.data();
    kernels::ref::rope(a);
    expect_close(got, want, tolerance(WeightType::f32, 2), "rope");
  }
}

TEST_P(KernelCpu, Softmax) {
  uint32_t seed = 1;
  for (int64_t n : {1, 7, 33, 129, 1000, 50000}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    auto x = random_vector(static_cast<size_t>(n), seed++, 8.0f);
    if (n > 7) {  // masked entries and a large spread
      x[3] = -std::numeric_limits<float>::infinity();
      x[5] = 80.0f;
      x[6] = -200.0f;
    }
    auto got = x, want = x;
    kernels::cpu::softmax(got.data(), n);
    kernels::ref::softmax(want.data(), n);
    expect_close(got, want, tolerance(WeightType::f32, n), "softmax");
  }
}

// The greedy pick's rule, one element at a time (the sampler's loop before kernels::cpu::argmax): the first largest
// number, NaNs never winning, 0 when all are NaN.
int64_t argmax_reference(const std::vector<float>& x) {
  int64_t best = 0;
  while (best < static_cast<int64_t>(x.size()) && std::isnan(x[best])) ++best;
  if (best == static_cast<int64_t>(x.size())) return 0;
  for (int64_t i = best + 1; i < static_cast<int64_t>(x.size()); ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Sizes around the vector widths and a vocabulary's, the largest at the ends, ties, NaNs in front of and beside the
// largest, all NaN, -inf only, signed zeros.
TEST_P(KernelCpu, ArgmaxIsTheFirstLargestAndSkipsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  uint32_t seed = 1;
  std::vector<std::vector<float>> cases;
  for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 151936}) {
    auto x = random_vector(static_cast<size_t>(n), seed++, 4.0f);
    cases.push_back(x);
    x[n - 1] = 100.0f;  // at the tail
    cases.push_back(x);
    x[0] = 100.0f;  // a tie with the tail: the first wins
    cases.push_back(x);
    x[0] = nan;  // a NaN where the largest was, and in front
    cases.push_back(x);
    for (int64_t i = 0; i < n; i += 3) x[i] = nan;
    cases.push_back(x);
    cases.push_back(std::vector<float>(static_cast<size_t>(n), nan));
    cases.push_back(std::vector<float>(static_cast<size_t>(n), -inf));
    std::vector<float> z(static_cast<size_t>(n), -1.0f);
    z[n / 2] = -0.0f;
    z[n - 1] = 0.0f;
    cases.push_back(z);
    if (n > 2) z[1] = nan, z[n / 3] = inf;
    cases.push_back(z);
  }
  for (size_t c = 0; c < cases.size(); ++c)
    EXPECT_EQ(kernels::cpu::argmax(cases[c].data(), static_cast<int64_t>(cases[c].size())), argmax_reference(cases[c]))
        << "case " << c << " (n " << cases[c].size() << ")";
  EXPECT_EQ(kernels::cpu::argmax(nullptr, 0), 0) << "nothing to pick from";
}

TEST_P(KernelCpu, ScaledExpIsATemperatureSoftmaxsWeights) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 7, 8, 15, 16, 17, 100, 151936}) {
    auto x = random_vector(static_cast<size_t>(n), static_cast<uint32_t>(n), 6.0f);
    if (n > 2) x[1] = nan, x[n - 1] = -inf, x[n / 2] = -1e30f;  // weights 0; an exponent far below the range
    const float m = *std::max_element(x.begin(), x.end(), [](float a, float b) { return std::isnan(b) ? false : std::isnan(a) || a < b; });
    for (const float scale : {1.0f, 1.0f / 0.7f, 1.0f / 3.0f}) {
      std::vector<float> w(static_cast<size_t>(n), -1.0f);
      const double sum = kernels::cpu::scaled_exp(x.data(), n, m, scale, w.data());
      double ref_sum = 0.0, kernel_sum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double arg = (static_cast<double>(x[i]) - m) * scale;
        const double ref = std::isnan(x[i]) ? 0.0 : std::exp(arg);
        ref_sum += ref;
        kernel_sum += w[i];
        // The argument is rounded to float: e^a moves by |a| x 2^-24 relative.
        const double tol = ref > 0.0 ? ref * (1e-6 + 1.2e-7 * std::abs(arg)) : 1e-37;
        ASSERT_NEAR(w[i], ref, tol) << "n " << n << " i " << i << " x " << x[i];
      }
      EXPECT_NEAR(sum, kernel_sum, 1e-12 * kernel_sum) << "the returned sum is the weights' (in double)";
      EXPECT_NEAR(sum, ref_sum, 2e-6 * ref_sum);
    }
  }
}

std::vector<float> activation_inputs(int64_t n, uint32_t seed) {
  auto g = random_vector(static_cast<size_t>(n), seed, 4.0f);
  const float extremes[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 20.0f, -20.0f, 90.0f, -90.0f, 200.0f, -200.0f, 3e5f, -3e5f};
  for (size_t i = 0; i < std::size(extremes) && i < g.size(); ++i) g[(i * 7919) % g.size()] = extremes[i];
  return g;
}

TEST_P(KernelCpu, SiluMul) {
  uint32_t seed = 1;
  for (int64_t n : {1, 7, 33, 129, 1000, 40000}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const auto g = activation_inputs(n, seed++), u = random_vector(static_cast<size_t>(n), seed++);
    std::vector<float> got(g.size()), want(g.size());
    kernels::cpu::silu_mul(g.data(), u.data(), got.data(), n);
    kernels::ref::silu_mul(g.data(), u.data(), want.data(), n);
    expect_close(got, want, tolerance(WeightType::f32, 1), "silu_mul");
  }
}

TEST_P(KernelCpu, GeluTanhMul) {
  uint32_t seed = 1;
  for (int64_t n : {1, 7, 33, 129, 1000, 40000}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const auto g = activation_inputs(n, seed++), u = random_vector(static_cast<size_t>(n), seed++);
    std::vector<float> got(g.size()), want(g.size());
    kernels::cpu::gelu_tanh_mul(g.data(), u.data(), got.data(), n);
    kernels::ref::gelu_tanh_mul(g.data(), u.data(), want.data(), n);
    expect_close(got, want, tolerance(WeightType::f32, 1), "gelu_tanh_mul");
  }
}

TEST_P(KernelCpu, RouteTopk) {
  uint32_t seed = 1;
  for (int64_t n_experts : {1, 8, 60, 128})
    for (int64_t k : {1, 2, 8})
      for (bool renorm : {false, true}) {
        if (k > n_experts) continue;
        SCOPED_TRACE(::testing::Message() << "experts " << n_experts << " k " << k << " renorm " << renorm);
        auto logits = random_vector(static_cast<size_t>(n_experts), seed++, 2.0f);
        if (n_experts >= 8) logits[1] = logits[4] = logits[6] = 9.0f;  // ties: lower index first
        std::vector<int32_t> e_got(k), e_want(k);
        std::vector<float> w_got(k), w_want(k);
        kernels::cpu::route_topk(logits.data(), n_experts, k, renorm, e_got.data(), w_got.data());
        kernels::ref::route_topk(logits.data(), n_experts, k, renorm, e_want.data(), w_want.data());
        EXPECT_EQ(e_got, e_want);
        expect_close(w_got, w_want, tolerance(WeightType::f32, n_experts), "route_topk weights");
      }
}

// Logits whose softmax is NaN everywhere (one NaN, one +inf, all -inf): the picks are still k distinct experts in
// [0, E), the first k by index, with NaN weights, on the reference and the CPU kernel alike (the GPU gathers expert
// weights by these ids; a NaN once left them out of range there).
std::vector<std::vector<float>> nan_softmax_logits(int64_t n_experts, uint32_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> rows(3, random_vector(static_cast<size_t>(n_experts), seed, 2.0f));
  rows[0][n_experts / 2] = std::numeric_limits<float>::quiet_NaN();
  rows[1][n_experts - 1] = inf;
  rows[2].assign(static_cast<size_t>(n_experts), -inf);
  return rows;
}

TEST_P(KernelCpu, RouteTopkOfNanProbabilitiesStaysInRange) {
  uint32_t seed = 7;
  for (int64_t n_experts : {8, 128})
    for (int64_t k : {2, 8})
      for (bool renorm : {false, true})
        for (const auto& logits : nan_softmax_logits(n_experts, seed++)) {
          SCOPED_TRACE(::testing::Message() << "experts " << n_experts << " k " << k << " renorm " << renorm);
          std::vector<int32_t> first_k(k), e_cpu(k), e_ref(k);
          for (int64_t i = 0; i < k; ++i) first_k[i] = static_cast<int32_t>(i);
          std::vector<float> w_cpu(k), w_ref(k);
          kernels::cpu::route_topk(logits.data(), n_experts, k, renorm, e_cpu.data(), w_cpu.data());
          kernels::ref::route_topk(logits.data(), n_experts, k, renorm, e_ref.data(), w_ref.data());
          EXPECT_EQ(e_cpu, first_k);
          EXPECT_EQ(e_ref, first_k);
          for (int64_t i = 0; i < k; ++i) EXPECT_TRUE(std::isnan(w_cpu[i]) && std::isnan(w_ref[i])) << "weight " << i;
        }
}

struct AttentionCase {
  const char* name;
  int64_t n_q, n_kv, n_heads, n_kv_heads, head_dim, q_pos0, kv_pos0, window;
  float softcap;
};

TEST_P(KernelCpu, Attention) {
  const AttentionCase cases[] = {
      {"prefill", 17, 17, 4, 2, 64, 0, 0, 0, 0.0f},
      {"decode", 1, 300, 8, 2, 128, 299, 0, 0, 0.0f},
      {"chunked prefill", 5, 133, 4, 2, 33, 128, 0, 0, 0.0f},
      {"window", 40, 40, 4, 2, 64, 0, 0, 16, 0.0f},
      {"window over a shifted cache", 5, 20, 4, 1, 16, 115, 100, 8, 0.0f},
      {"softcap 50", 9, 70, 4, 2, 128, 61, 0, 0, 50.0f},
      {"softcap 5 + window", 9, 70, 6, 3, 80, 61, 0, 12, 5.0f},
      {"nothing visible", 3, 8, 4, 2, 16, 0, 10, 0, 0.0f},
      {"head_dim 1", 4, 4, 2, 2, 1, 0, 0, 0, 0.0f},
      {"head_dim 7, MQA", 6, 9, 4, 1, 7, 3, 0, 0, 0.0f},
      {"long, several blocks", 3, 1000, 4, 2, 64, 997, 0, 0, 0.0f},
      {"long window", 2, 1000, 2, 1, 256, 998, 0, 300, 0.0f},
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto q = random_vector(static_cast<size_t>(c.n_q * c.n_heads * c.head_dim), seed++);
    const auto k = random_vector(static_cast<size_t>(c.n_kv * c.n_kv_heads * c.head_dim), seed++);
    const auto v = random_vector(static_cast<size_t>(c.n_kv * c.n_kv_heads * c.head_dim), seed++);
    std::vector<float> got(q.size(), std::nanf("")), want(q.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)) * 2.0f;  // sharper than usual
    kernels::AttentionArgs a{q.data(),  k.data(),       v.data(),   got.data(), c.n_q,  c.n_kv,  c.n_heads,
                             c.n_kv_heads, c.head_dim, c.q_pos0, c.kv_pos0, scale, c.softcap, c.window};
    kernels::cpu::attention(a);
    a.out = want.data();
    kernels::ref::attention(a);
    expect_close(got, want, tolerance(WeightType::f32, c.head_dim + c.n_kv), "attention");
  }
}

TEST(KernelIsa, NamesAndForcing) {
  using kernels::cpu::Isa;
  EXPECT_TRUE(kernels::cpu::isa_supported(Isa::scalar));
  EXPECT_FALSE(kernels::cpu::force_isa("sse9"));
  EXPECT_TRUE(kernels::cpu::force_isa("scalar"));
  EXPECT_STREQ(kernels::cpu::isa_name(), "scalar");
  EXPECT_TRUE(kernels::cpu::force_isa(nullptr));
  std::printf("[   INFO   ] detected ISA: %s, active: %s\n", kernels::cpu::isa_name(kernels::cpu::detected_isa()),
              kernels::cpu::isa_name());
}

// ------------------------------------------------------------------------------------------- half.h

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Half, Bf16RoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    EXPECT_EQ(bits(f), h << 16);
    if (std::isnan(f)) EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << h;
    else EXPECT_EQ(f32_to_bf16(f), h) << h;
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // halfway, even below
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // halfway, even above
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // above halfway
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to +inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));  // signalling NaN stays NaN
}

TEST(Half, F16RoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
    else EXPECT_EQ(f32_to_f16(f), h) << h;
  }
}

TEST(Half, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                  // halfway past the max rounds to +inf
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);     // halfway to the smallest subnormal: even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 subnormal ulps: even (2)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) * 1.0009765625f), 0x0401);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t f16_hw(float f) { return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
__attribute__((target("f16c"))) float f16_to_f32_hw(uint16_t h) { return _cvtsh_ss(h); }

// The scalar converters against the F16C instructions: every f16 pattern, and f32 patterns spread over the
// whole range (all exponents, random mantissas, plus the halfway cases).
TEST(Half, F16MatchesHardware) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float sw = f16_to_f32(static_cast<uint16_t>(h)), hw = f16_to_f32_hw(static_cast<uint16_t>(h));
    if (std::isnan(hw)) EXPECT_TRUE(std::isnan(sw)) << h;
    else EXPECT_EQ(bits(sw), bits(hw)) << h;
  }
  std::mt19937 rng(42);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = rng();
    if (i % 4 == 0) u = (u & 0xffffe000u) | 0x1000u;  // exact f16 halfway points
    const float f = from_bits(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), f16_hw(f)) << std::hex << u;
  }
}
#endif

}  // namespace
}  // namespace lmlab
