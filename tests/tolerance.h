// Tolerances for comparing a computation with a reference, from one place (STYLE.md point 5): no test writes a
// bare 1e-3. Use tolerance(type, reduction_len) for the relative tolerance and expect_close() / close() to
// compare two float vectors element by element.
//
// The error measure of element i is |got_i - want_i| / (|want_i| + rms(want)): relative for large elements,
// relative to the vector's scale for elements near zero (a dot product that cancels to ~0 has no meaningful
// relative error). A vector passes when every element's measure is <= rel_tol; NaN must meet NaN and an
// infinity the same infinity.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>

#include "kernels/kernels.h"

namespace lmlab::test {

// Unit roundoff (half an ulp at 1) of a storage type: 2^-24 f32, 2^-11 f16, 2^-8 bf16.
inline double unit_roundoff(kernels::WeightType type) {
  switch (type) {
    case kernels::WeightType::f32: return std::ldexp(1.0, -24);
    case kernels::WeightType::f16: return std::ldexp(1.0, -11);
    case kernels::WeightType::bf16: return std::ldexp(1.0, -8);
  }
  return std::ldexp(1.0, -24);
}

// Relative tolerance for results that went through a reduction of reduction_len terms (1 for element-wise
// work). `type` is the coarsest precision in which the two computations differ: f32 when an optimised kernel
// is compared with the reference (both read the same stored weights and differ only in f32 rounding and
// summation order), bf16 when a bf16 model is compared with f32 / double logits, and so on. Rounding errors
// of a sum grow like sqrt(len) relative to the scale of the result; the factor 8 leaves room for the few
// ulps of vector exp / division and for unlucky orders.
inline double tolerance(kernels::WeightType type, int64_t reduction_len) {
  return 8.0 * unit_roundoff(type) * std::sqrt(static_cast<double>(std::max<int64_t>(1, reduction_len)));
}

// Relative tolerance for attention computed on tensor cores with f32 operands as f16 hi + lo parts (the CUDA
// prefill kernel, cuda/kernels/prefill_attention.cuh): the parts carry ~22 bits, but the MMA's f32 accumulation
// truncates rather than rounds, so the error of a long history's sum grows faster than sqrt(len); measured on the
// H200 at 1.04-1.43x the f32 bound over 5000 positions (a few elements of 330K), so twice that margin.
inline double tensor_core_f32_tolerance(int64_t reduction_len) {
  return 4.0 * tolerance(kernels::WeightType::f32, reduction_len);
}

// Relative tolerance for a result computed from int16-quantized activations (kernels/matmul_affine_i16.h)
// against the same computation on the f32 activations. Each value moves by at most half a step of its block,
// xd / 2 = amax / 65534, uniformly: rms amax / (65534 sqrt 3) per value, which for blocks of normal values
// (amax ~ 2.5 rms) is ~2e-5 of the activations' rms and, summed through random weights, of the result's rms.
// The factor 8 as in tolerance() covers the worst element; the f32 rounding of the two sums comes on top.
inline double int16_activation_tolerance(int64_t reduction_len) {
  return 8.0 / (65534.0 * std::sqrt(3.0)) + tolerance(kernels::WeightType::f32, reduction_len);
}

// The same for the split-int8 kernel's activations (kernels/matmul_affine_i8.h): 16-bit values up to 32639,
// so half a step is amax / 65278.
inline double split_int8_activation_tolerance(int64_t reduction_len) {
  return 8.0 / (65278.0 * std::sqrt(3.0)) + tolerance(kernels::WeightType::f32, reduction_len);
}

// Relative tolerance for a bf16-weight result computed by the vdpbf16ps GEMM (kernels/cpu/matmul_bf16.h), which
// splits each activation into two bf16 parts, x ~ hi + lo, with |x - hi - lo| <= 2^-8 |x - hi| <= 2^-16 |x|: the
// same kind of per-value error as the int16 activations above (relative to each value rather than to its block's
// largest), roughly uniform, so 8 * 2^-16 / sqrt(3) of the result's scale, plus the f32 rounding of the sums.
inline double bf16x2_activation_tolerance(int64_t reduction_len) {
  return 8.0 * std::ldexp(1.0, -16) / std::sqrt(3.0) + tolerance(kernels::WeightType::f32, reduction_len);
}

// Relative tolerance for the int16 prefill GEMM of bf16 / f16 weights (kernels/cpu/matmul_half_i16.h), which
// quantizes x per block of 32 and W per row and 256 columns to |q| <= 8191: each value moves by up to amax / 16382,
// uniformly, rms amax / (16382 sqrt 3). A normal block's amax is ~2.4 rms (32 values) to ~2.9 (256) and rarely
// above 4, so 4 bounds each operand's error at 4 / (16382 sqrt 3) of the result's scale; the two add in quadrature
// (sqrt 2), and 6 of that covers the worst element of a test's ~1e5 (the f32 rounding of the sums on top). It is a
// loose bound (~9 sigma of the typical error): the exact check is against a model of the kernel's arithmetic
// (tests/matmul_half_i16_test.cpp), this one that the arithmetic approximates the true product.
inline double int14_operands_tolerance(int64_t reduction_len) {
  return 6.0 * std::sqrt(2.0) * 4.0 / (16382.0 * std::sqrt(3.0)) + tolerance(kernels::WeightType::f32, reduction_len);
}

// The same for an MLX affine result from the vdpbf16ps GEMM (kernels/cpu/matmul_affine_bf16.h): the hi + lo error
// rides on the level dot products s * sum q x, which the bias term partly cancels, so the bound scales by
// level_ratio = rms over outputs of sqrt(sum_c (s q_c x_c)^2) / rms(result) (at least 1), measured by the caller.
inline double bf16x2_affine_tolerance(int64_t reduction_len, double level_ratio) {
  return bf16x2_activation_tolerance(reduction_len) * std::max(1.0, level_ratio);
}

// Element-wise comparison (see the file comment); the failure message names `what` and gives the worst
// element's index, got and want, the max abs error, the max relative error |got - want| / |want| and the count
// of elements over tolerance.
inline ::testing::AssertionResult close(std::span<const float> got, std::span<const float> want, double rel_tol,
                                        const char* what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != expected " << want.size();
  double sum_sq = 0.0;
  size_t n_finite = 0;
  for (float w : want)
    if (std::isfinite(w)) {
      sum_sq += static_cast<double>(w) * w;
      ++n_finite;
    }
  const double rms = n_finite ? std::sqrt(sum_sq / static_cast<double>(n_finite)) : 0.0;
  double max_abs = 0.0, max_rel = 0.0, worst = 0.0;
  size_t worst_i = 0, n_bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    double err;
    if (std::isnan(w) || std::isnan(g) || std::isinf(w) || std::isinf(g)) {
      const bool same = (std::isnan(w) && std::isnan(g)) || g == w;
      err = same ? 0.0 : std::numeric_limits<double>::infinity();
    } else {
      const double abs_err = std::fabs(g - w);
      max_abs = std::max(max_abs, abs_err);
      if (w != 0.0) max_rel = std::max(max_rel, abs_err / std::fabs(w));
      const double denom = std::fabs(w) + rms;
      err = denom > 0.0 ? abs_err / denom : (abs_err > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
    }
    if (err > rel_tol) ++n_bad;
    if (err > worst || (i == 0)) {
      worst = err;
      worst_i = i;
    }
  }
  std::ostringstream msg;
  msg.precision(9);
  msg << what << ": worst [" << worst_i << "] got " << (got.empty() ? 0.0f : got[worst_i]) << " want "
      << (want.empty() ? 0.0f : want[worst_i]) << ", error " << worst << " (tolerance " << rel_tol
      << "), max abs err " << max_abs << ", max rel err " << max_rel << ", " << n_bad << " of " << got.size()
      << " over";
  if (n_bad > 0) return ::testing::AssertionFailure() << msg.str();
  return ::testing::AssertionSuccess() << msg.str();
}

// EXPECT-style wrapper of close(); add SCOPED_TRACE in the caller for the case's parameters.
inline void expect_close(std::span<const float> got, std::span<const float> want, double rel_tol, const char* what) {
  EXPECT_TRUE(close(got, want, rel_tol, what));
}

}  // namespace lmlab::test
