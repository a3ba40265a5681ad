// The affine-quantized matmul: bit-stream layout of the reference against hand-packed values, then every
// cpu:: path (each ISA this machine has, every bit width, group size and scale dtype) against the reference
// over odd shapes, decode (n = 1) and prefill (n > 1, across the token and column blocks).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/matmul_affine.h"
#include "isa_test.h"
#include "quant_matrix.h"
#include "tolerance.h"
#include "util/half.h"

namespace lmlab {
namespace {

using kernels::AffineWeight;
using kernels::MatmulAffineArgs;
using kernels::ScaleType;
using test::QuantMatrix;
using test::scale_name;

TEST(MatmulAffineRef, DequantizeRowReadsTheBitStream) {
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (ScaleType st : {ScaleType::bf16, ScaleType::f16, ScaleType::f32}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, " << scale_name(st));
      QuantMatrix m(bits, 32, 3, 96, st, 7u + bits);
      std::vector<float> row(96);
      for (int64_t r = 0; r < m.rows; ++r) {
        kernels::ref::dequantize_affine_row(m.weight(), r, row.data());
        for (int64_t c = 0; c < m.cols; ++c) {
          const int64_t g = r * (m.cols / 32) + c / 32;
          ASSERT_EQ(row[c], m.scale(g) * static_cast<float>(m.q[r * m.cols + c]) + m.bias(g)) << "r " << r << " c " << c;
        }
      }
    }
}

// MLX's 4-bit layout spelled out: word 0 of a row holds values 0..7, value 0 in bits 0-3.
TEST(MatmulAffineRef, FirstValueInLowestBits) {
  std::vector<uint32_t> packed = {0x76543210u, 0xfedcba98u, 0u, 0u};
  const uint16_t one = f32_to_bf16(1.0f), zero = f32_to_bf16(0.0f);
  AffineWeight w{packed.data(), &one, &zero, ScaleType::bf16, 4, 32, 1, 32};
  std::vector<float> row(32);
  kernels::ref::dequantize_affine_row(w, 0, row.data());
  for (int c = 0; c < 16; ++c) EXPECT_EQ(row[c], static_cast<float>(c));
  for (int c = 16; c < 32; ++c) EXPECT_EQ(row[c], 0.0f);
}

TEST(MatmulAffineRef, ParamsSupported) {
  EXPECT_TRUE(kernels::affine_params_supported(4, 64, 128));
  EXPECT_TRUE(kernels::affine_params_supported(3, 32, 96));
  EXPECT_FALSE(kernels::affine_params_supported(4, 64, 96));   // cols not a multiple of the group
  EXPECT_FALSE(kernels::affine_params_supported(4, 48, 96));   // group not a multiple of 32
  EXPECT_FALSE(kernels::affine_params_supported(1, 32, 32));
  EXPECT_FALSE(kernels::affine_params_supported(16, 32, 32));
}

struct Shape {
  int64_t rows, cols_groups, n;
};

class MatmulAffineCpu : public test::IsaTest {};

TEST_P(MatmulAffineCpu, MatchesReferenceOverOddShapes) {
  // rows: tails of the 4-row blocks; cols: 1 to 9 groups (crossing the 512-column prefill block);
  // n: decode, small prefill, and more than one 64-token block.
  const Shape shapes[] = {{1, 1, 1}, {5, 3, 1}, {13, 9, 1}, {67, 2, 1}, {3, 1, 2},
                          {7, 5, 3}, {9, 9, 5}, {6, 4, 70}, {33, 3, 17}};
  uint32_t seed = 1;
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64, 128}) {
      int which = 0;
      for (const Shape& sh : shapes) {
        const ScaleType st = static_cast<ScaleType>(which++ % 3);
        const int64_t cols = sh.cols_groups * gs;
        SCOPED_TRACE(testing::Message() << GetParam() << ": " << bits << " bits, group " << gs << ", "
                                        << scale_name(st) << ", rows " << sh.rows << ", cols " << cols << ", n "
                                        << sh.n);
        QuantMatrix m(bits, gs, sh.rows, cols, st, seed++);
        std::mt19937 rng(seed++);
        std::normal_distribution<float> xd(0.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(sh.n * cols));
        for (auto& v : x) v = xd(rng);
        std::vector<float> want(static_cast<size_t>(sh.n * sh.rows)), got(want.size(), -1.0f);
        kernels::ref::matmul_affine({m.weight(), x.data(), want.data(), sh.n});
        kernels::cpu::matmul_affine({m.weight(), x.data(), got.data(), sh.n});
        // Both read the same stored values; they differ in f32 rounding and in the order of the sums (the
        // fast path scales per group and adds the biases through sums of x).
        test::expect_close(got, want, test::tolerance(kernels::WeightType::f32, cols), "matmul_affine");
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Isa, MatmulAffineCpu, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
