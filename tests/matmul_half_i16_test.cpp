// cpu::matmul_half_i16 (bf16 / f16 weights, 14-bit integer x and W on vpdpwssd) against two references: a model of
// its arithmetic in double (the same levels and scales, exact integer dots), within f32 rounding, which pins the
// rounding, the bit count and every scale's index; and ref::matmul on the same weights and f32 activations, within the quantization's bound (tests/tolerance.h, int14_operands_tolerance):
// shapes around its blocking, threads, operand ranges, the int32 block sums at their largest, non-finite inputs,
// and matmul()'s dispatch to it.
#include <gtest/gtest.h>

#include <algorithm>
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

float widen(uint16_t v, WeightType type) { return type == WeightType::f16 ? f16_to_f32(v) : bf16_to_f32(v); }

// The kernel's factor kQmax / amax in f32, 0 where it is not finite (kernels/cpu/matmul_half_i16.cpp).
float level_factor(float amax) {
  const float f = 8191.0f / amax;
  return amax > 0.0f && std::isfinite(f) ? f : 0.0f;
}

// What matmul_half_i16 computes, in double from the same levels: W per row and 256 columns, x per token and 32
// columns, each level nearbyint(v * factor) with the product in f32; dot products of levels exact. Also each output's
// sqrt(sum of its squared terms), the scale of its f32 rounding. Finite inputs only.
struct QuantizedModel {
  std::vector<double> y, term_rms;
};
QuantizedModel quantized_model(const Shape& s, const std::vector<uint16_t>& w, const std::vector<float>& x,
                               WeightType type) {
  auto levels = [](const float* v, int64_t n, std::vector<double>& q) {
    float amax = 0.0f;
    for (int64_t c = 0; c < n; ++c) amax = std::max(amax, std::fabs(v[c]));
    const float f = level_factor(amax);
    for (int64_t c = 0; c < n; ++c) q.push_back(std::nearbyint(v[c] * f));
    return amax > 0.0f ? static_cast<double>(amax / 8191.0f) : 0.0;
  };
  QuantizedModel m{std::vector<double>(static_cast<size_t>(s.n * s.rows)), std::vector<double>(s.n * s.rows)};
  std::vector<float> wr(static_cast<size_t>(s.cols));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t c = 0; c < s.cols; ++c) wr[c] = widen(w[r * s.cols + c], type);
    std::vector<double> wq, wd;
    for (int64_t c = 0; c < s.cols; c += 256) wd.push_back(levels(&wr[c], std::min<int64_t>(256, s.cols - c), wq));
    for (int64_t t = 0; t < s.n; ++t) {
      std::vector<double> xq;
      double y = 0, sq = 0;
      for (int64_t c0 = 0; c0 < s.cols; c0 += 32) {
        const double xd = levels(&x[t * s.cols + c0], 32, xq);
        double dot = 0;
        for (int64_t c = c0; c < c0 + 32; ++c) {
          dot += wq[c] * xq[c];
          sq += std::pow(wd[c / 256] * wq[c] * xd * xq[c], 2);
        }
        y += wd[c0 / 256] * xd * dot;
      }
      m.y[t * s.rows + r] = y;
      m.term_rms[t * s.rows + r] = std::sqrt(sq);
    }
  }
  return m;
}

// got against the model: f32 rounding over cols / 32 + cols / 256 + 2 operations on partial sums of about the
// terms' root-sum-square, 16 times the unit roundoff of each. A level off by one (truncation instead of rounding,
// one bit fewer, a wrong scale) moves an output by ~1e-4 of that scale, 10x or more past this bound.
void expect_model(const Shape& s, const std::vector<float>& got, const QuantizedModel& m) {
  const double ops = static_cast<double>(s.cols / 32 + s.cols / 256 + 2);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = 16.0 * std::ldexp(1.0, -24) * std::sqrt(ops) * m.term_rms[i] + 1e-30;
    if (!(std::fabs(got[i] - m.y[i]) <= bound) && bad++ < 5)
      ADD_FAILURE() << "output " << i << " (token " << i / s.rows << ", row " << i % s.rows << "): got " << got[i]
                    << ", the model " << m.y[i] << ", bound " << bound;
  }
  EXPECT_EQ(bad, 0) << "outputs off the model of the kernel's arithmetic";
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
    expect_model(s, got, quantized_model(s, w, x, type));
    test::expect_close(got, want, test::int14_operands_tolerance(s.cols), "matmul_half_i16");
  }
};

// 16-row panels, 2-panel tiles, 6-token tiles, 16-pair activation blocks, 128-pair reduction blocks.
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
  // Tiny blocks too: a factor 8191 / amax that overflows f32 leaves the block's levels 0, not garbage.
  for (int64_t c = 0; c < 32; ++c) x[4 * s.cols + 64 + c] = 1e-36f * static_cast<float>(c % 5);
  std::vector<float> got, want;
  const auto w = to_half(wf);
  run(s, w, x, got, want);
  // Each output against its own scale (outputs span 2^40 here: a bound relative to all of them would not see the
  // small ones).
  expect_model(s, got, quantized_model(s, w, x, WeightType::bf16));
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

// A non-finite activation makes its token's outputs NaN, a non-finite weight its row's: never finite noise, also when
// the bad value sits in a later reduction block (NaN carried across the blocks' sums) and for f16's bit patterns.
TEST_F(HalfI16Gemm, NonFiniteInputsGiveNaNNotNoise) {
  const Shape s{40, 544, 13};
  for (WeightType type : {WeightType::bf16, WeightType::f16}) {
    SCOPED_TRACE(type == WeightType::f16 ? "f16" : "bf16");
    const auto wf = random_vector(static_cast<size_t>(s.rows * s.cols), 8);
    const auto xf = random_vector(static_cast<size_t>(s.n * s.cols), 9);
    auto w = to_half(wf, type);
    auto x = xf;
    x[5 * s.cols + 520] = std::numeric_limits<float>::infinity();  // third reduction block
    w[3 * s.cols + 300] = type == WeightType::f16 ? 0x7e00 : 0x7fc0;  // NaN, second block
    w[9 * s.cols + 1] = type == WeightType::f16 ? 0xfc00 : 0xff80;    // -inf, first block
    std::vector<float> got, want;
    run(s, w, x, got, want, type);
    const QuantizedModel m = quantized_model(s, to_half(wf, type), xf, type);  // the finite outputs' model
    std::vector<float> fine_got;
    QuantizedModel fine;
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t r = 0; r < s.rows; ++r) {
        const size_t i = static_cast<size_t>(t * s.rows + r);
        if (t == 5 || r == 3 || r == 9) {
          EXPECT_TRUE(std::isnan(got[i])) << "token " << t << " row " << r << ": " << got[i];
        } else {
          fine_got.push_back(got[i]);
          fine.y.push_back(m.y[i]);
          fine.term_rms.push_back(m.term_rms[i]);
        }
      }
    expect_model(s, fine_got, fine);
  }
}

// matmul() takes the integer GEMM exactly when asked (int16_prefill) for >= kBf16GemmMinTokens tokens and columns
// in whole blocks of 32; otherwise the exact bf16 paths.
TEST_F(HalfI16Gemm, MatmulDispatchesOnTheFlagTokensAndColumns) {
  const int64_t n = kernels::cpu::kBf16GemmMinTokens;
  for (WeightType type : {WeightType::bf16, WeightType::f16})
  for (const Shape& s : {Shape{70, 256, n}, Shape{70, 250, n}, Shape{70, 256, n - 1}}) {
    SCOPED_TRACE(::testing::Message() << (type == WeightType::f16 ? "f16" : "bf16") << " cols " << s.cols << " n "
                                      << s.n);
    const auto w = to_half(random_vector(static_cast<size_t>(s.rows * s.cols), 11), type);
    const auto x = random_vector(static_cast<size_t>(s.n * s.cols), 12);
    std::vector<float> flagged(static_cast<size_t>(s.n * s.rows)), plain(flagged.size()), direct(flagged.size());
    MatmulArgs a{type, w.data(), s.rows, s.cols, x.data(), flagged.data(), s.n, true};
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
