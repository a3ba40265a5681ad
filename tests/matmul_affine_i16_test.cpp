// The integer-dot affine matmul (kernels/matmul_affine_i16.h): the int16 activation quantizer against its
// definition, the vector quantizers bit for bit against the reference, every cpu:: path (each ISA this machine
// has; the avx512 path is the VNNI kernel where the CPU has VNNI) against the reference over odd shapes, and the
// whole integer product against the f32-activation product within the int16 rounding bound.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/matmul_affine_i16.h"
#include "isa_test.h"
#include "quant_matrix.h"
#include "tolerance.h"

namespace lmlab {
namespace {

using kernels::I16Activations;
using kernels::ScaleType;
using test::QuantMatrix;
using test::scale_name;

std::vector<float> normal_values(int64_t n, uint32_t seed, float sigma = 1.0f) {
  return test::random_vector(static_cast<size_t>(n), seed, sigma);
}

TEST(MatmulAffineI16Ref, QuantizerRoundsEachBlockToItsMaxOver32767) {
  std::vector<float> x = normal_values(4 * 32, 3);
  for (int i = 64; i < 96; ++i) x[i] = 0.0f;  // block 2: all zero
  x[5] = -7.5f;                               // block 0's max is negative
  I16Activations q;
  kernels::ref::quantize_i16(x.data(), 2, 64, q);
  ASSERT_EQ(q.d.size(), 4u);
  EXPECT_EQ(q.d[0], 7.5f / 32767.0f);
  EXPECT_EQ(q.q[5], -32767);
  EXPECT_EQ(q.d[2], 0.0f);
  for (int b = 0; b < 4; ++b) {
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int16_t v = q.q[b * 32 + i];
      EXPECT_LE(std::abs(v), 32767);
      // nearbyint: within half a step of the value.
      EXPECT_LE(std::fabs(x[b * 32 + i] - q.d[b] * v), q.d[b] * 0.5f * (1.0f + 1e-5f)) << b << " " << i;
      sum += v;
    }
    EXPECT_EQ(q.sums[b], sum);
  }
}

TEST(MatmulAffineI16Ref, SupportedWeights) {
  auto w = [](int bits, int gs, int64_t cols) {
    return kernels::AffineWeight{nullptr, nullptr, nullptr, ScaleType::bf16, bits, gs, 4, cols};
  };
  EXPECT_TRUE(kernels::affine_i16_supported(w(4, 64, 128)));
  EXPECT_TRUE(kernels::affine_i16_supported(w(8, 32, 96)));
  EXPECT_TRUE(kernels::affine_i16_supported(w(4, 128, 384)));
  EXPECT_FALSE(kernels::affine_i16_supported(w(3, 32, 96)));
  EXPECT_FALSE(kernels::affine_i16_supported(w(2, 64, 128)));
  EXPECT_FALSE(kernels::affine_i16_supported(w(4, 64, 96)));
}

class MatmulAffineI16Cpu : public test::IsaTest {};

TEST_P(MatmulAffineI16Cpu, QuantizerIsBitIdenticalToTheReference) {
  for (int64_t cols : {32, 96, 1056})
    for (int64_t n : {1, 3, 17}) {
      SCOPED_TRACE(testing::Message() << GetParam() << ": n " << n << ", cols " << cols);
      std::vector<float> x = normal_values(n * cols, static_cast<uint32_t>(cols + n), 3.0f);
      for (int64_t i = 0; i < 32; ++i) x[i] = 0.0f;  // a zero block
      x[40 % (n * cols)] = 0.5f;                     // ties are rounded to even in both
      I16Activations want, got;
      kernels::ref::quantize_i16(x.data(), n, cols, want);
      kernels::cpu::quantize_i16(x.data(), n, cols, got);
      EXPECT_EQ(got.q, want.q);
      EXPECT_EQ(got.d, want.d);
      EXPECT_EQ(got.sums, want.sums);
    }
}

struct Shape {
  int64_t rows, cols_groups, n;
};

TEST_P(MatmulAffineI16Cpu, MatchesReferenceOverOddShapes) {
  // rows: tails of the 4-row blocks; cols: 1 to 9 groups (partial 64-byte chunks, more than one 16-group scale
  // window); n: decode, the 4- and 2-token tiles and their tails, more than one 64-token block.
  const Shape shapes[] = {{1, 1, 1},  {5, 3, 1}, {13, 9, 1}, {67, 2, 1}, {3, 1, 2},  {7, 5, 3},
                          {9, 9, 5},  {6, 4, 70}, {33, 3, 17}, {4, 35, 1}, {8, 17, 4}};
  uint32_t seed = 11;
  for (int bits : {4, 8})
    for (int gs : {32, 64, 128}) {
      int which = 0;
      for (const Shape& sh : shapes) {
        const ScaleType st = static_cast<ScaleType>(which++ % 3);
        const int64_t cols = sh.cols_groups * gs;
        SCOPED_TRACE(testing::Message() << GetParam() << ": " << bits << " bits, group " << gs << ", "
                                        << scale_name(st) << ", rows " << sh.rows << ", cols " << cols << ", n "
                                        << sh.n);
        QuantMatrix m(bits, gs, sh.rows, cols, st, seed++);
        std::vector<float> x = normal_values(sh.n * cols, seed++);
        I16Activations xq;
        kernels::ref::quantize_i16(x.data(), sh.n, cols, xq);
        std::vector<float> want(static_cast<size_t>(sh.n * sh.rows)), got(want.size(), -1.0f);
        kernels::ref::matmul_affine_i16(m.weight(), xq, want.data());
        kernels::cpu::matmul_affine_i16(m.weight(), xq, got.data());
        // The same x_hat and stored weights: the integer dots are exact, so they differ only in f32 rounding and
        // in the order of the sums (per lane and group, biases through sums of x_hat).
        test::expect_close(got, want, test::tolerance(kernels::WeightType::f32, cols), "matmul_affine_i16");
      }
    }
}

TEST_P(MatmulAffineI16Cpu, Int16ActivationsStayWithinTheirRoundingOfTheF32Product) {
  uint32_t seed = 101;
  for (int bits : {4, 8})
    for (int gs : {32, 64}) {
      const int64_t rows = 37, cols = 24 * gs, n = 3;
      SCOPED_TRACE(testing::Message() << GetParam() << ": " << bits << " bits, group " << gs);
      QuantMatrix m(bits, gs, rows, cols, ScaleType::bf16, seed++);
      std::vector<float> x = normal_values(n * cols, seed++);
      std::vector<float> want(static_cast<size_t>(n * rows)), got(want.size());
      kernels::ref::matmul_affine({m.weight(), x.data(), want.data(), n});
      kernels::cpu::matmul_affine_int({m.weight(), x.data(), got.data(), n});
      test::expect_close(got, want, test::int16_activation_tolerance(cols), "matmul_affine_int vs f32 activations");
    }
}

INSTANTIATE_TEST_SUITE_P(Isa, MatmulAffineI16Cpu, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
