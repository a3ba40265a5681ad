// The dense Linear's preparation for decode (weights/linear_dense.cpp): a resident matrix of at least one huge page
// is copied into 2 MB-aligned memory marked for transparent huge pages, and then computes from the copy. The results
// must be bit-identical to the mapped bytes' (the same kernel over the same values), stored() must still name the
// original bytes (the CUDA backend uploads them), and a matrix under a huge page is left as it is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

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

}  // namespace
}  // namespace lmlab
