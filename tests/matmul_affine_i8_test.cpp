// The split-int8 4-bit affine matmul (kernels/matmul_affine_i8.h): the quantizer against its definition,
// the vector quantizer bit for bit against the reference, every cpu:: path (each ISA this machine has; the
// avx512 path is the VNNI kernel where the CPU has VNNI) against the reference over odd shapes, batch
// invariance (a token's result is the same bits whatever other tokens share the call), and the whole integer
// product against the f32-activation product within the activations' rounding bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "isa_test.h"
#include "kernels/cpu/isa.h"
#include "kernels/matmul_affine_i8.h"
#include "quant_matrix.h"
#include "tolerance.h"

namespace lmlab {
namespace {

using kernels::I8Activations;
using kernels::ScaleType;
using test::QuantMatrix;
using test::scale_name;

std::vector<float> normal_values(int64_t n, uint32_t seed, float sigma = 1.0f) {
  return test::random_vector(static_cast<size_t>(n), seed, sigma);
}

TEST(MatmulAffineI8Ref, QuantizerRoundsEachBlockToItsMaxOver32639) {
  std::vector<float> x = normal_values(4 * 32, 3);
  for (int i = 64; i < 96; ++i) x[i] = 0.0f;  // block 2: all zero
  x[5] = -7.5f;                               // block 0's max is negative
  I8Activations q;
  kernels::ref::quantize_i8(x.data(), 2, 64, q);
  ASSERT_EQ(q.d.size(), 4u);
  EXPECT_EQ(q.d[0], 7.5f / 32639.0f);
  EXPECT_EQ(q.q[5], -32639);
  EXPECT_EQ(q.d[2], 0.0f);
  for (int b = 0; b < 4; ++b) {
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int16_t v = q.q[b * 32 + i];
      EXPECT_LE(std::abs(v), 32639);
      EXPECT_LE(std::fabs(x[b * 32 + i] - q.d[b] * v), q.d[b] * 0.5f * (1.0f + 1e-5f)) << b << " " << i;
      sum += v;
    }
    EXPECT_EQ(q.sums[b], sum);
  }
}

TEST(MatmulAffineI8Ref, SupportedWeights) {
  auto w = [](int bits, int gs, int64_t cols) {
    return kernels::AffineWeight{nullptr, nullptr, nullptr, ScaleType::bf16, bits, gs, 4, cols};
  };
  EXPECT_TRUE(kernels::affine_i8_supported(w(4, 64, 128)));
  EXPECT_TRUE(kernels::affine_i8_supported(w(4, 32, 96)));
  EXPECT_TRUE(kernels::affine_i8_supported(w(4, 128, 384)));
  EXPECT_FALSE(kernels::affine_i8_supported(w(8, 64, 128)));
  EXPECT_FALSE(kernels::affine_i8_supported(w(2, 64, 128)));
  EXPECT_FALSE(kernels::affine_i8_supported(w(4, 64, 96)));
}

class MatmulAffineI8Cpu : public test::IsaTest {};

TEST_P(MatmulAffineI8Cpu, QuantizerIsBitIdenticalToTheReference) {
  for (int64_t cols : {32, 96, 1056})
    for (int64_t n : {1, 3, 17}) {
      SCOPED_TRACE(testing::Message() << GetParam() << ": n " << n << ", cols " << cols);
      std::vector<float> x = normal_values(n * cols, static_cast<uint32_t>(cols + n), 3.0f);
      for (int64_t i = 0; i < 32; ++i) x[i] = 0.0f;  // a zero block
      I8Activations want, got;
      kernels::ref::quantize_i8(x.data(), n, cols, want);
      // A tie: x[40] / d lands exactly on .5 (rounded to even in both).
      if (n * cols > 64) {
        x[40] = 0.5f * want.d[1];
        kernels::ref::quantize_i8(x.data(), n, cols, want);
      }
      kernels::cpu::quantize_i8(x.data(), n, cols, got);
      EXPECT_EQ(got.q, want.q);
      EXPECT_EQ(got.d, want.d);
      EXPECT_EQ(got.sums, want.sums);
    }
}

struct Shape {
  int64_t rows, cols_groups, n;
};

TEST_P(MatmulAffineI8Cpu, MatchesReferenceOverOddShapes) {
  // rows: tails of the 16- and 8-row blocks; cols: 1 to 35 groups (partial 64-byte chunks, more than one
  // chunk); n: decode, the 8-token tile and its tails, more than one tile.
  const Shape shapes[] = {{1, 1, 1},  {5, 3, 1},  {13, 9, 1},  {67, 2, 1},  {3, 1, 2},  {7, 5, 3},
                          {9, 9, 5},  {6, 4, 20}, {33, 3, 17}, {4, 35, 1},  {16, 17, 8}, {40, 6, 9}};
  uint32_t seed = 11;
  for (int gs : {32, 64, 128}) {
    int which = 0;
    for (const Shape& sh : shapes) {
      const ScaleType st = static_cast<ScaleType>(which++ % 3);
      const int64_t cols = sh.cols_groups * gs;
      SCOPED_TRACE(testing::Message() << GetParam() << ": group " << gs << ", " << scale_name(st) << ", rows "
                                      << sh.rows << ", cols " << cols << ", n " << sh.n);
      QuantMatrix m(4, gs, sh.rows, cols, st, seed++);
      std::vector<float> x = normal_values(sh.n * cols, seed++);
      I8Activations xq;
      kernels::ref::quantize_i8(x.data(), sh.n, cols, xq);
      std::vector<float> want(static_cast<size_t>(sh.n * sh.rows)), got(want.size(), -1.0f);
      kernels::ref::matmul_affine_i8(m.weight(), xq, want.data());
      kernels::cpu::matmul_affine_i8(m.weight(), xq, got.data());
      // The same x_hat and stored weights: the integer dots are exact, so they differ only in f32 rounding and
      // in the order of the sums (per block and group, biases through sums of x_hat).
      test::expect_close(got, want, test::tolerance(kernels::WeightType::f32, cols), "matmul_affine_i8");
    }
  }
}

TEST_P(MatmulAffineI8Cpu, ATokensResultDoesNotDependOnItsBatch) {
  // Continuous batching: a sequence decoded with others must give the bits it gives alone (a temperature-0
  // answer may not depend on who else is being served).
  const int64_t rows = 45, cols = 7 * 64, n = 11;
  QuantMatrix m(4, 64, rows, cols, ScaleType::bf16, 77);
  std::vector<float> x = normal_values(n * cols, 78);
  std::vector<float> all(static_cast<size_t>(n * rows));
  kernels::cpu::matmul_affine_int8({m.weight(), x.data(), all.data(), n});
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> one(static_cast<size_t>(rows));
    kernels::cpu::matmul_affine_int8({m.weight(), x.data() + t * cols, one.data(), 1});
    EXPECT_EQ(0, std::memcmp(one.data(), all.data() + t * rows, one.size() * sizeof(float))) << GetParam() << ": token " << t;
  }
}

TEST_P(MatmulAffineI8Cpu, SplitActivationsStayWithinTheirRoundingOfTheF32Product) {
  uint32_t seed = 101;
  for (int gs : {32, 64, 128}) {
    const int64_t rows = 37, cols = 24 * gs, n = 3;
    SCOPED_TRACE(testing::Message() << GetParam() << ": group " << gs);
    QuantMatrix m(4, gs, rows, cols, ScaleType::bf16, seed++);
    std::vector<float> x = normal_values(n * cols, seed++);
    std::vector<float> want(static_cast<size_t>(n * rows)), got(want.size());
    kernels::ref::matmul_affine({m.weight(), x.data(), want.data(), n});
    kernels::cpu::matmul_affine_int8({m.weight(), x.data(), got.data(), n});
    test::expect_close(got, want, test::split_int8_activation_tolerance(cols), "matmul_affine_int8 vs f32 activations");
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, MatmulAffineI8Cpu, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
