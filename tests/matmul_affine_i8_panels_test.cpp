// The split-int8 kernel on 16-row panels (kernels/affine_panels.h): the repack against the stored layout (tail
// panel rows zero), and on every ISA path the panel kernel bit for bit against the row-layout kernel (and so
// against its reference tolerance) over odd shapes: rows % 16 != 0 (the tail panel; fewer than 8 rows and 8-15
// rows, where the AVX2 kernel runs one or two halves), groups of 32, 64 and 128, each scale type, the 8-token
// tile, its tails and more than one tile; batch invariance; and a resident Linear taking the panels.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "isa_test.h"
#include "kernels/affine_panels.h"
#include "kernels/matmul_affine_i8.h"
#include "quant_matrix.h"
#include "tolerance.h"
#include "weights/linear.h"

namespace lmlab {
namespace {

using kernels::AffinePanels;
using kernels::I8Activations;
using kernels::kPanelRows;
using kernels::ScaleType;
using test::QuantMatrix;
using test::scale_name;

class AffinePanelsRepack : public test::IsaTest {};

TEST_P(AffinePanelsRepack, RecordsHoldTheStoredWordsAndScalesWithZeroTailRows) {
  // The AVX-512 repack moves 16 words of a row at a time: 3 groups of 32 (12 words, one partial transpose), of 64
  // (24: one whole, one partial), of 128 (48: three whole).
  for (ScaleType st : {ScaleType::f32, ScaleType::f16, ScaleType::bf16})
    for (int gs : {32, 64, 128}) {
      SCOPED_TRACE(testing::Message() << GetParam() << ": " << scale_name(st) << ", group " << gs);
      const int64_t rows = 21, cols = 3 * gs;  // a full panel and a tail of 5 rows
      QuantMatrix m(4, gs, rows, cols, st, 5);
      const kernels::AffineWeight w = m.weight();
      const AffinePanels p = kernels::repack_affine_panels(w);
      ASSERT_EQ(p.panels, 2);
      ASSERT_EQ(p.record_bytes % 64, 0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data.get()) % 64, 0u);
      const int64_t sb = p.scale_bytes(), wpg = gs / 8, G = cols / gs;
      for (int64_t r = 0; r < 2 * kPanelRows; ++r)
        for (int64_t g = 0; g < G; ++g) {
          const uint8_t* rec = p.record(r / kPanelRows, g);
          const int64_t l = r % kPanelRows;
          const auto* words = reinterpret_cast<const uint32_t*>(rec + p.words_offset());
          const bool in = r < rows;
          const auto* ss = static_cast<const uint8_t*>(w.scales) + (r * G + g) * sb;
          const auto* bs = static_cast<const uint8_t*>(w.biases) + (r * G + g) * sb;
          for (int64_t k = 0; k < sb; ++k) {
            EXPECT_EQ(rec[l * sb + k], in ? ss[k] : 0) << r << " " << g;
            EXPECT_EQ(rec[(kPanelRows + l) * sb + k], in ? bs[k] : 0) << r << " " << g;
          }
          for (int64_t i = 0; i < wpg; ++i)
            EXPECT_EQ(words[i * kPanelRows + l], in ? w.packed[r * w.words_per_row() + g * wpg + i] : 0u) << r << " " << g;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Isa, AffinePanelsRepack, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

class MatmulAffineI8Panels : public test::IsaTest {};

struct Shape {
  int64_t rows, cols_groups, n;
};

TEST_P(MatmulAffineI8Panels, BitIdenticalToTheRowLayoutKernelOverOddShapes) {
  const Shape shapes[] = {{1, 1, 1},  {5, 3, 1},  {13, 9, 1},   {67, 2, 1},  {3, 1, 2},   {7, 5, 3},  {9, 9, 5},
                          {6, 4, 20}, {33, 3, 17}, {4, 35, 1}, {16, 17, 8}, {40, 6, 9}, {8, 2, 8},  {24, 5, 16},
                          {31, 3, 7}, {17, 4, 1}};
  uint32_t seed = 211;
  for (int gs : {32, 64, 128}) {
    int which = 0;
    for (const Shape& sh : shapes) {
      const ScaleType st = static_cast<ScaleType>(which++ % 3);
      const int64_t cols = sh.cols_groups * gs;
      SCOPED_TRACE(testing::Message() << GetParam() << ": group " << gs << ", " << scale_name(st) << ", rows "
                                      << sh.rows << ", cols " << cols << ", n " << sh.n);
      QuantMatrix m(4, gs, sh.rows, cols, st, seed++);
      const AffinePanels p = kernels::repack_affine_panels(m.weight());
      std::vector<float> x = test::random_vector(static_cast<size_t>(sh.n * cols), seed++);
      I8Activations xq;
      kernels::cpu::quantize_i8(x.data(), sh.n, cols, xq);
      std::vector<float> want(static_cast<size_t>(sh.n * sh.rows), -2.0f), got(want.size(), -1.0f), ref(want.size());
      kernels::cpu::matmul_affine_i8(m.weight(), xq, want.data());
      kernels::cpu::matmul_affine_i8_panels(p, xq, got.data());
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      kernels::ref::matmul_affine_i8(m.weight(), xq, ref.data());
      test::expect_close(got, ref, test::tolerance(kernels::WeightType::f32, cols), "matmul_affine_i8_panels");
    }
  }
}

TEST_P(MatmulAffineI8Panels, ATokensResultDoesNotDependOnItsBatch) {
  const int64_t rows = 45, cols = 7 * 64, n = 11;
  QuantMatrix m(4, 64, rows, cols, ScaleType::bf16, 177);
  const AffinePanels p = kernels::repack_affine_panels(m.weight());
  std::vector<float> x = test::random_vector(static_cast<size_t>(n * cols), 178);
  std::vector<float> all(static_cast<size_t>(n * rows));
  kernels::cpu::matmul_affine_int8_panels(p, x.data(), all.data(), n);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> one(static_cast<size_t>(rows));
    kernels::cpu::matmul_affine_int8_panels(p, x.data() + t * cols, one.data(), 1);
    EXPECT_EQ(0, std::memcmp(one.data(), all.data() + t * rows, one.size() * sizeof(float))) << GetParam() << ": token " << t;
  }
}

TEST_P(MatmulAffineI8Panels, AResidentLinearDecodesAsTheStreamedOne) {
  // A resident make_affine_linear repacks when prepared (the CPU backend does it at load, for all but MoE experts);
  // unprepared, or a streamed expert's (not resident), it keeps the row layout. Their decode bits must agree.
  // 2^20 weights: the integer path's bound.
  const int64_t rows = 1024 + 5, cols = 1024, n = 9;
  QuantMatrix m(4, 64, rows, cols, ScaleType::bf16, 301);
  std::vector<float> x = test::random_vector(static_cast<size_t>(n * cols), 302);
  const auto resident = make_affine_linear(m.weight(), {}, /*resident=*/true);
  const auto streamed = make_affine_linear(m.weight(), {}, /*resident=*/false);
  std::vector<float> a(static_cast<size_t>(n * rows)), b(a.size());
  for (int rep = 0; rep < 2; ++rep) {  // the first call on the row layout, the second on the panels
    if (rep == 1) resident->prepare_decode();
    resident->forward_decode(x.data(), a.data(), n);
    streamed->forward_decode(x.data(), b.data(), n);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << GetParam() << ", call " << rep;
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, MatmulAffineI8Panels, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
