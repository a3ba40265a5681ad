// The MLX affine prefill GEMM on vdpbf16ps (kernels/cpu/matmul_affine_bf16.h) against ref::matmul_affine:
// called directly over shapes around its blocking (16-row panels, 2-panel tiles, 6- and 12-token tiles, 256-column
// reduction blocks, 512-row unpacked blocks), 4 and 8 bits, every group size and scale dtype, 1 and 3 threads;
// then the affine Linear's prefill on every ISA path (the GEMM where it applies, the f32 kernel elsewhere).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "isa_test.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_affine_bf16.h"
#include "kernels/matmul_affine.h"
#include "quant_matrix.h"
#include "tolerance.h"
#include "util/thread_pool.h"
#include "weights/linear.h"

namespace lmlab {
namespace {

using kernels::ScaleType;
using test::QuantMatrix;

struct Case {
  int bits, group_size;
  int64_t rows, cols, n;
};

std::vector<float> want_of(const QuantMatrix& m, const std::vector<float>& x, int64_t n) {
  std::vector<float> want(static_cast<size_t>(n * m.rows));
  kernels::ref::matmul_affine({m.weight(), x.data(), want.data(), n});
  return want;
}

// tests/tolerance.h, bf16x2_affine_tolerance: rms over outputs of the level dot products' scale
// sqrt(sum_c (s q_c x_c)^2), over rms(want).
double level_ratio(const QuantMatrix& m, const std::vector<float>& x, int64_t n, const std::vector<float>& want) {
  const int64_t G = m.cols / m.group_size;
  double levels = 0.0, result = 0.0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < m.rows; ++r) {
      for (int64_t c = 0; c < m.cols; ++c) {
        const double v = static_cast<double>(m.scale(r * G + c / m.group_size)) * m.q[r * m.cols + c] * x[t * m.cols + c];
        levels += v * v;
      }
      result += static_cast<double>(want[t * m.rows + r]) * want[t * m.rows + r];
    }
  return result > 0.0 ? std::sqrt(levels / result) : 1.0;
}

class AffineBf16Gemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::cpu::has_avx512_bf16()) GTEST_SKIP() << "this CPU lacks AVX512_BF16 (vdpbf16ps)";
  }
  static void check(const Case& c, ScaleType st, uint32_t seed) {
    SCOPED_TRACE(::testing::Message() << c.bits << " bits, group " << c.group_size << ", " << test::scale_name(st)
                                      << ", rows " << c.rows << " cols " << c.cols << " n " << c.n);
    const QuantMatrix m(c.bits, c.group_size, c.rows, c.cols, st, seed);
    ASSERT_TRUE(kernels::cpu::matmul_affine_bf16_supported(m.weight()));
    const auto x = test::random_vector(static_cast<size_t>(c.n * c.cols), seed + 1);
    std::vector<float> got(static_cast<size_t>(c.n * c.rows), std::nanf(""));
    kernels::cpu::matmul_affine_bf16({m.weight(), x.data(), got.data(), c.n});
    const auto want = want_of(m, x, c.n);
    test::expect_close(got, want, test::bf16x2_affine_tolerance(c.cols, level_ratio(m, x, c.n, want)),
                       "matmul_affine_bf16");
  }
};

TEST_F(AffineBf16Gemm, SmallShapes) {
  uint32_t seed = 1;
  int which = 0;
  for (int bits : {4, 8})
    for (int gs : {32, 64, 128})
      for (int64_t rows : {1, 15, 16, 17, 33, 47})
        for (int64_t groups : {1, 3, 5})
          for (int64_t n : {1, 5, 6, 7, 12, 13, 25}) {
            check({bits, gs, rows, groups * gs, n}, static_cast<ScaleType>(which++ % 3), seed);
            seed += 2;
          }
}

TEST_F(AffineBf16Gemm, LargeShapes) {
  const Case cases[] = {{4, 64, 300, 2048, 70}, {8, 32, 1001, 256, 30}, {4, 128, 64, 4096, 24},
                        {4, 64, 600, 1024, 37}, {8, 64, 129, 512, 512}, {4, 32, 530, 96, 64}};
  uint32_t seed = 500;
  int which = 0;
  for (const auto& c : cases) check(c, static_cast<ScaleType>(which++ % 3), seed += 2);
  const int previous = ThreadPool::global().size();
  for (int threads : {1, 3}) {
    ThreadPool::set_global_threads(threads);
    check({4, 64, 1100, 320, 20}, ScaleType::bf16, seed += 2);  // one thread: three unpacked W blocks
    check({8, 128, 203, 512, 29}, ScaleType::f16, seed += 2);
  }
  ThreadPool::set_global_threads(previous);
}

TEST_F(AffineBf16Gemm, SupportedShapes) {
  const QuantMatrix m4(4, 64, 16, 128, ScaleType::bf16, 1), m2(2, 64, 16, 128, ScaleType::bf16, 1),
      m6(6, 64, 16, 128, ScaleType::bf16, 1);
  EXPECT_TRUE(kernels::cpu::matmul_affine_bf16_supported(m4.weight()));
  EXPECT_FALSE(kernels::cpu::matmul_affine_bf16_supported(m2.weight()));
  EXPECT_FALSE(kernels::cpu::matmul_affine_bf16_supported(m6.weight()));
  std::vector<float> x(128 * 64);
  kernels::MatmulAffineArgs a{m4.weight(), x.data(), nullptr, kernels::cpu::kAffineBf16MinTokens - 1};
  EXPECT_FALSE(kernels::cpu::matmul_affine_uses_bf16_gemm(a));
}

// The affine Linear's prefill (n >= kAffineBf16MinTokens) on each ISA path: the GEMM's tolerance where it runs,
// f32's elsewhere (AVX2, scalar, or AVX-512 without AVX512_BF16).
class AffineLinearPrefill : public test::IsaTest {};

TEST_P(AffineLinearPrefill, MatchesReference) {
  uint32_t seed = 900;
  for (int bits : {3, 4, 8}) {
    SCOPED_TRACE(::testing::Message() << GetParam() << ": " << bits << " bits");
    // 2^20 weights: the Linear takes the GEMM from there (linear_affine.cpp, kGemmMinWeights).
    const int64_t rows = 1024, cols = 1024, n = kernels::cpu::kAffineBf16MinTokens + 6;
    const QuantMatrix m(bits, 64, rows, cols, ScaleType::bf16, seed++);
    const auto x = test::random_vector(static_cast<size_t>(n * cols), seed++);
    const auto linear = make_affine_linear(m.weight(), {});
    std::vector<float> got(static_cast<size_t>(n * rows), std::nanf(""));
    linear->forward(x.data(), got.data(), n);
    const bool gemm = kernels::cpu::matmul_affine_uses_bf16_gemm({m.weight(), x.data(), got.data(), n});
    EXPECT_EQ(gemm, bits != 3 && std::string(GetParam()) == "avx512" && kernels::cpu::avx512_bf16_enabled());
    if (gemm) {  // the f32 kernel would meet the f32 bound; the GEMM's hi + lo error is well above it
      std::vector<float> f32(got.size());
      kernels::matmul_affine({m.weight(), x.data(), f32.data(), n});
      EXPECT_NE(0, std::memcmp(f32.data(), got.data(), got.size() * sizeof(float)));
    }
    const auto want = want_of(m, x, n);
    test::expect_close(got, want,
                       gemm ? test::bf16x2_affine_tolerance(cols, level_ratio(m, x, n, want))
                            : test::tolerance(kernels::WeightType::f32, cols),
                       "AffineLinear::forward");
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, AffineLinearPrefill, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
