// The dense Linear's preparation for decode (weights/linear_dense.cpp): a resident matrix of at least one huge page
// is copied into 2 MB-aligned memory marked for transparent huge pages, and then computes from the copy. The results
// must be bit-identical to the mapped bytes' (the same kernel over the same values), stored() must still name the
// original bytes (the CUDA backend uploads them), and a matrix under a huge page is left as it is. And which prefill
// GEMM a matrix takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul_half_i16.h"
#include "kernels/kernels.h"
#include "util/half.h"
#include "weights/linear.h"

namespace lmlab {
namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (auto& e : v) e = f32_to_bf16(d(rng));
  return v;
}

// copied: whether the matrix is big enough to be copied; the original bytes are then zeroed, which a copy does not
// see and a matrix computing in place does.
void expect_prepared_equal(int64_t rows, int64_t cols, bool copied) {
  SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
  std::vector<uint16_t> w = random_bf16(static_cast<size_t>(rows * cols), 7);
  const auto* bytes = reinterpret_cast<const uint8_t*>(w.data());
  auto linear = make_dense_linear(rows, cols, kernels::WeightType::bf16, bytes, {});
  std::vector<std::vector<float>> xs, before;
  for (int64_t n : {1, 3, 70}) {
    std::vector<float>& x = xs.emplace_back(static_cast<size_t>(n * cols));
    std::mt19937 rng(static_cast<uint32_t>(n));
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& e : x) e = d(rng);
    linear->forward(x.data(), before.emplace_back(static_cast<size_t>(n * rows)).data(), n);
  }
  linear->prepare_decode();
  linear->prepare_decode();  // idempotent
  EXPECT_EQ(linear->stored().dense, bytes) << "stored() names the original bytes";
  std::fill(w.begin(), w.end(), uint16_t{0});
  for (size_t i = 0; i < xs.size(); ++i) {
    const int64_t n = static_cast<int64_t>(xs[i].size()) / cols;
    std::vector<float> after(before[i].size());
    linear->forward(xs[i].data(), after.data(), n);
    const bool same = std::memcmp(before[i].data(), after.data(), after.size() * sizeof(float)) == 0;
    EXPECT_EQ(same, copied) << n << " tokens: " << (copied ? "the copy must give the same bits"
                                                          : "a matrix left in place reads the zeroed bytes");
  }
}

TEST(DenseLinearPrepared, ComputesBitIdenticalFromItsHugePageCopy) {
  expect_prepared_equal(1040, 1024, true);  // 2.08 MB of bf16: copied
  expect_prepared_equal(96, 200, false);    // under a huge page: left in place
}

// A large bf16 matrix's prefill takes the int16 GEMM (kernels/cpu/matmul_half_i16.h); keep_prefill_exact (the output
// head, MoE routers) and decode rows (forward_decode) take the exact kernels: bit-identical to kernels::matmul
// without the flag, at any token count.
TEST(DenseLinearPrefill, LargeMatricesTakeTheInt16GemmUnlessKeptExact) {
  if (!kernels::cpu::half_i16_gemm_available()) GTEST_SKIP() << "no int16 GEMM here (needs AVX-512 VNNI)";
  const int64_t rows = 1024, cols = 1024, n = 70;  // 2^20 weights: the bound
  std::vector<uint16_t> w = random_bf16(static_cast<size_t>(rows * cols), 9);
  const auto* bytes = reinterpret_cast<const uint8_t*>(w.data());
  std::vector<float> x(static_cast<size_t>(n * cols));
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& e : x) e = d(rng);
  std::vector<float> exact(static_cast<size_t>(n * rows)), got(exact.size());
  kernels::matmul({kernels::WeightType::bf16, bytes, rows, cols, x.data(), exact.data(), n});

  auto fast = make_dense_linear(rows, cols, kernels::WeightType::bf16, bytes, {});
  fast->forward(x.data(), got.data(), n);
  EXPECT_NE(got, exact) << "a 2^20-weight matrix's prefill should take the int16 GEMM";
  fast->forward_decode(x.data(), got.data(), n);
  EXPECT_EQ(got, exact) << "decode rows stay exact however many are batched";
  fast->keep_prefill_exact();
  fast->forward(x.data(), got.data(), n);
  EXPECT_EQ(got, exact);

  auto small = make_dense_linear(rows - 1, cols, kernels::WeightType::bf16, bytes, {});
  std::vector<float> small_got(static_cast<size_t>(n * (rows - 1)));
  small->forward(x.data(), small_got.data(), n);
  for (int64_t t = 0; t < n; ++t)
    ASSERT_TRUE(std::equal(small_got.begin() + t * (rows - 1), small_got.begin() + (t + 1) * (rows - 1),
                           exact.begin() + t * rows))
        << "under 2^20 weights the exact GEMM, token " << t;
}

}  // namespace
}  // namespace lmlab
