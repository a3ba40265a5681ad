// The fast mse fit (convert/quantize.cpp, vector candidate evaluation) against the original exhaustive scalar
// fit kept in convert/quantize_ref.cpp: on every ISA path, for every bit width, group size and scale dtype
// (bf16, f16), on normal and heavy-tailed (Student-t, 2 degrees of freedom: rare large outliers per group)
// data, no group's squared dequantization error is larger than the reference's, beyond float-summation noise.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "convert/quantize.h"
#include "convert/quantize_ref.h"
#include "isa_test.h"
#include "kernels/matmul_affine.h"

namespace lmlab {
namespace {

// The fast search ranks candidates by float sums (~1e-6 relative), the reference by double sums.
constexpr double kSumNoise = 1e-5;

class QuantizeFit : public test::IsaTest {};

INSTANTIATE_TEST_SUITE_P(Quantize, QuantizeFit, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

struct Quantized {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> s, b;
};

// Squared error of each group of w [rows, cols] after a round trip through q.  -> [rows * cols / gs]
std::vector<double> group_errors_of(const Quantized& q, const std::vector<float>& w, int64_t rows, int64_t cols,
                                    int bits, int gs, kernels::ScaleType st = kernels::ScaleType::bf16) {
  kernels::AffineWeight aw{q.packed.data(), q.s.data(), q.b.data(), st, bits, gs, rows, cols};
  std::vector<float> row(cols);
  std::vector<double> err(rows * cols / gs, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::ref::dequantize_affine_row(aw, r, row.data());
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(row[c]) - w[r * cols + c];
      err[r * (cols / gs) + c / gs] += d * d;
    }
  }
  return err;
}

TEST_P(QuantizeFit, MseNeverWorseThanTheExhaustiveReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::student_t_distribution<float> heavy(2.0f);
  for (auto st : {kernels::ScaleType::bf16, kernels::ScaleType::f16})
    for (bool heavy_tailed : {false, true})
      for (int bits : {2, 3, 4, 6, 8})
        for (int gs : {32, 64, 128}) {
          SCOPED_TRACE(testing::Message() << (st == kernels::ScaleType::f16 ? "f16" : "bf16") << " scales, "
                                          << (heavy_tailed ? "student-t" : "normal") << ", " << bits << " bits, group "
                                          << gs);
          const int64_t rows = 64, cols = 4 * gs;
          std::vector<float> w(rows * cols);
          for (auto& v : w) v = heavy_tailed ? 0.01f * heavy(rng) : normal(rng);
          Quantized fast{std::vector<uint32_t>(rows * cols * bits / 32), std::vector<uint16_t>(rows * cols / gs),
                         std::vector<uint16_t>(rows * cols / gs)};
          Quantized ref = fast;
          quantize_affine(w.data(), rows, cols, bits, gs, st, fast.packed.data(), fast.s.data(), fast.b.data(),
                          QuantMethod::mse);
          quantize_affine_ref(w.data(), rows, cols, bits, gs, st, ref.packed.data(), ref.s.data(), ref.b.data(),
                              QuantMethod::mse);
          const auto e_fast = group_errors_of(fast, w, rows, cols, bits, gs, st);
          const auto e_ref = group_errors_of(ref, w, rows, cols, bits, gs, st);
          double sum_fast = 0, sum_ref = 0;
          for (size_t g = 0; g < e_fast.size(); ++g) {
            EXPECT_LE(e_fast[g], e_ref[g] * (1 + kSumNoise)) << "group " << g;
            sum_fast += e_fast[g], sum_ref += e_ref[g];
          }
          EXPECT_LE(sum_fast, sum_ref * (1 + kSumNoise));
        }
}

// minmax needs no search: the fast path must store exactly the reference's scales, biases and levels.
TEST_P(QuantizeFit, MinmaxMatchesTheReferenceExactly) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (int bits : {2, 3, 4, 6, 8})
    for (int gs : {32, 64, 128}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, group " << gs);
      const int64_t rows = 8, cols = 2 * gs;
      std::vector<float> w(rows * cols);
      for (auto& v : w) v = normal(rng);
      Quantized fast{std::vector<uint32_t>(rows * cols * bits / 32), std::vector<uint16_t>(rows * cols / gs),
                     std::vector<uint16_t>(rows * cols / gs)};
      Quantized ref = fast;
      quantize_affine(w.data(), rows, cols, bits, gs, kernels::ScaleType::bf16, fast.packed.data(), fast.s.data(),
                      fast.b.data());
      quantize_affine_ref(w.data(), rows, cols, bits, gs, kernels::ScaleType::bf16, ref.packed.data(), ref.s.data(),
                          ref.b.data());
      EXPECT_EQ(fast.s, ref.s);
      EXPECT_EQ(fast.b, ref.b);
      EXPECT_EQ(fast.packed, ref.packed);
    }
}

}  // namespace
}  // namespace lmlab
