// cpu::matmul_half_i16 (bf16 / f16 weights, 14-bit integer x and W on vpdpwssd) against ref::matmul on the same
// weights and f32 activations, within the quantization's bound (tests/tolerance.h, int14_operands_tolerance):
// shapes around its blocking, threads, operand ranges, the int32 block sums at their largest, non-finite inputs,
// and matmul()'s dispatch to it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "isa_test.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_bf16.h"
#include "kernels/cpu/matmul_half_i16.h"
#include "kernels/kernels.h"
#include "tolerance.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab {
namespace {

using kernels::MatmulArgs;
using kernels::WeightType;
using test::random_vector;

struct Shape {
  int64_t rows, cols, n;
};

std::vector<uint16_t> to_half(const std::vector<float>& v, WeightType type = WeightType::bf16) {
  std::vector<uint16_t> w;
  for (float f : v) w.push_back(type == WeightType::f16 ? f32_to_f16(f) : f32_to_bf16(f));
  return w;
}

class HalfI16Gemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::cpu::has_avx512_vnni()) GTEST_SKIP() << "this CPU lacks AVX-512 VNNI (vpdpwssd)";
  }
  // got (the kernel) and want (the reference) for W = w, X = x.
  static void run(const Shape& s, const std::vector<uint16_t>& w, const std::vector<float>& x, std::vector<float>& got,
                  std::vector<float>& want, WeightType type = WeightType::bf16) {
    got.assign(static_cast<size_t>(s.n * s.rows), std::nanf(""));
    want.assign(got.size(), 0.0f);
    MatmulArgs a{type, w.data(), s.rows, s.cols, x.data(), got.data(), s.n};
    kernels::cpu::matmul_half_i16(a);
    a.y = want.data();
    kernels::ref::matmul(a);
  }
  static void check(const Shape& s, uint32_t seed, WeightType type = WeightType::bf16) {
    SCOPED_TRACE(::testing::Message() << (type == WeightType::f16 ? "f16" : "bf16") << " rows " << s.rows << " cols "
                                      << s.cols << " n " << s.n);
    const auto w = to_half(random_vector(static_cast<size_t>(s.rows * s.cols), seed), type);
    const auto x = random_vector(static_cast<size_t>(s.n * s.cols), seed + 1);
    std::vector<float> got, want;
    run(s, w, x, got, want, type);
    test::expect_close(got, want, test::int14_operands_tolerance(s.cols), "matmul_half_i16");
  }
};

// 16-row panels, 2-panel tiles, 12-token tiles, 16-pair activation blocks, 128-pair reduction blocks.
TEST_F(HalfI16Gemm, ShapesAroundTheBlocking) {
  uint32_t seed = 1;
  for (WeightType type : {WeightType::bf16, WeightType::f16})
    for (int64_t rows : {1, 15, 16, 17, 33, 47})
      for (int64_t cols : {32, 64, 96, 256, 288, 544})
        for (int64_t n : {1, 5, 6, 7, 13, 25}) check({rows, cols, n}, seed++, type);
}

TEST_F(HalfI16Gemm, LargeShapesAndThreadCounts) {
  uint32_t seed = 500;
  for (const Shape& s : {Shape{300, 2048, 70}, Shape{1001, 256, 30}, Shape{600, 1056, 37}, Shape{129, 512, 512}})
    check(s, seed++);
  check({300, 2048, 70}, seed++, WeightType::f16);
  const int previous = ThreadPool::global().size();
  for (int threads : {1, 3}) {
    ThreadPool::set_global_threads(threads);
    check({1100, 320, 20}, seed++);  // one thread: 69 panels in three packed W blocks
    check({203, 544, 29}, seed++);
  }
  ThreadPool::set_global_threads(previous);
}

// Operands whose scale varies by 2^20 from block to block (x per 32 columns, W per 256; the error bound is relative
// to each block's largest value, so within a block the values stay normal), and whole rows of zeros.
TEST_F(HalfI16Gemm, OperandRanges) {
  const Shape s{40, 800, 17};
  auto wf = random_vector(static_cast<size_t>(s.rows * s.cols), 3);
  auto x = random_vector(static_cast<size_t>(s.n * s.cols), 4);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) wf[r * s.cols + c] *= std::ldexp(1.0f, static_cast<int>((r * 5 + c / 256 * 3) % 21) - 10);
  for (int64_t t = 0; t < s.n; ++t)
    for (int64_t c = 0; c < s.cols; ++c) x[t * s.cols + c] *= std::ldexp(1.0f, static_cast<int>((t * 7 + c / 32 * 5) % 21) - 10);
  for (int64_t c = 0; c < s.cols; ++c) {
    wf[7 * s.cols + c] = 0.0f;
    x[2 * s.cols + c] = 0.0f;
  }
  std::vector<float> got, want;
  run(s, to_half(wf), x, got, want);
  test::expect_close(got, want, test::int14_operands_tolerance(s.cols), "matmul_half_i16");
  for (int64_t r = 0; r < s.rows; ++r) EXPECT_EQ(got[2 * s.rows + r], 0.0f);
}

// Every value at its block's largest, all of one sign: each 32-column block sums 32 * 8191^2 (just under 2^31)
// in int32, so any overflow would show. The exact answer is cols * 1.5 * 0.75 (both exact in bf16 / f32).
TEST_F(HalfI16Gemm, LargestBlockSumsDoNotOverflow) {
  const Shape s{35, 2048, 13};
  for (float sign : {1.0f, -1.0f}) {
    std::vector<float> got, want;
    run(s, to_half(std::vector<float>(static_cast<size_t>(s.rows * s.cols), 1.5f * sign)),
        std::vector<float>(static_cast<size_t>(s.n * s.cols), 0.75f), got, want);
    for (float v : got) ASSERT_EQ(v, sign * 1.125f * static_cast<float>(s.cols));
  }
}

// A non-finite activation makes its token's outputs NaN, a non-finite weight its row's: never finite noise.
TEST_F(HalfI16Gemm, NonFiniteInputsGiveNaNNotNoise) {
  const Shape s{40, 96, 13};
  auto wf = random_vector(static_cast<size_t>(s.rows * s.cols), 8);
  auto x = random_vector(static_cast<size_t>(s.n * s.cols), 9);
  x[5 * s.cols + 40] = std::numeric_limits<float>::infinity();
  wf[3 * s.cols + 70] = std::numeric_limits<float>::quiet_NaN();
  wf[9 * s.cols + 1] = -std::numeric_limits<float>::infinity();
  std::vector<float> got, want;
  run(s, to_half(wf), x, got, want);
  for (int64_t t = 0; t < s.n; ++t)
    for (int64_t r = 0; r < s.rows; ++r) {
      const float g = got[t * s.rows + r];
      if (t == 5 || r == 3 || r == 9) EXPECT_TRUE(std::isnan(g)) << "token " << t << " row " << r << ": " << g;
      else EXPECT_NEAR(g, want[t * s.rows + r], test::int14_operands_tolerance(s.cols) * 40) << t << " " << r;
    }
}

// matmul() takes the integer GEMM exactly when asked (int16_prefill) for >= kBf16GemmMinTokens tokens and columns
// in whole blocks of 32; otherwise the exact bf16 paths.
TEST_F(HalfI16Gemm, MatmulDispatchesOnTheFlagTokensAndColumns) {
  if (!kernels::cpu::avx512_bf16_enabled()) GTEST_SKIP() << "the bf16 kernels are off on this CPU";
  const int64_t n = kernels::cpu::kBf16GemmMinTokens;
  for (const Shape& s : {Shape{70, 256, n}, Shape{70, 250, n}, Shape{70, 256, n - 1}}) {
    SCOPED_TRACE(::testing::Message() << "cols " << s.cols << " n " << s.n);
    const auto w = to_half(random_vector(static_cast<size_t>(s.rows * s.cols), 11));
    const auto x = random_vector(static_cast<size_t>(s.n * s.cols), 12);
    std::vector<float> flagged(static_cast<size_t>(s.n * s.rows)), plain(flagged.size()), direct(flagged.size());
    MatmulArgs a{WeightType::bf16, w.data(), s.rows, s.cols, x.data(), flagged.data(), s.n, true};
    const bool takes = kernels::cpu::matmul_uses_half_i16(a);
    EXPECT_EQ(takes, s.cols % 32 == 0 && s.n >= n);
    kernels::matmul(a);
    a.int16_prefill = false;
    a.y = plain.data();
    kernels::matmul(a);
    if (takes) {
      a.y = direct.data();
      kernels::cpu::matmul_half_i16(a);
      EXPECT_EQ(flagged, direct);
      EXPECT_NE(flagged, plain) << "the integer GEMM and the exact one agree to the bit: the flag did nothing";
    } else {
      EXPECT_EQ(flagged, plain);
    }
  }
}

}  // namespace
}  // namespace lmlab
