// Every CUDA kernel (engine/src/kernels/cuda/) against the CPU reference of the same stem, over odd shapes:
// dense GEMV (vector and scalar paths, split-K), cuBLAS prefill GEMM (dense, and affine dequantized into passes),
// MLX affine 2-8 bit, gathered
// expert GEMV, grouped expert GEMM, RMSNorm, RoPE, activations, routing, MoE combine, embedding rows, and the device KV layer with its attention
// (GQA, sliding window, softcap, split-K over long contexts). Without a GPU (or without nvcc) every test
// skips with the reason.
#include <gtest/gtest.h>

#include "model/backend_factory.h"

#ifdef LMLAB_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_allocator.h"
#include "cuda/device_kv.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "cuda/kernels/kernels_cuda.h"
#include "kernels/matmul_affine.h"
#include "cuda_test.h"
#include "tolerance.h"
#include "util/half.h"

namespace lmlab {
namespace {

namespace kc = kernels::cuda;
using cuda::DeviceAllocator;
using cuda::DeviceBuffer;
using kernels::WeightType;

class CudaKernels : public test::CudaTest {
 protected:
  CudaKernels() : CudaTest("CUDA kernels", 1234) {}
  // E experts of rows x cols, 4-bit g64 bf16 scales, stacked as a model's expert tensor: the device weight of expert
  // 0 with the strides between experts; the buffers go into `keep`.
  kc::DeviceWeight stacked_experts(int64_t E, int64_t rows, int64_t cols, std::vector<DeviceBuffer>& keep);
  // A random weight on the device (its buffers into keep): MLX affine of `bits` in groups of 64 with bf16 scales,
  // or dense in `dense` (bits 0).
  kc::DeviceWeight device_weight(int bits, WeightType dense, int64_t rows, int64_t cols,
                                 std::vector<DeviceBuffer>& keep);
};

using test::ScopedDecodeOptions;

std::vector<uint16_t> to_half(const std::vector<float>& v, WeightType t) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = t == WeightType::bf16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
  return h;
}

TEST_F(CudaKernels, DenseMatmulMatchesReference) {
  struct Case { int64_t rows, cols, n; bool bias; };
  // GEMV vector path, scalar path (cols % 8 != 0), split-K (few rows, long rows), cuBLAS prefill (odd n).
  const Case cases[] = {{37, 72, 1, false}, {129, 264, 3, true}, {77, 99, 5, false}, {300, 4096, 1, false},
                        {65, 136, 8, true},  {131, 200, 20, true}, {50, 99, 17, false}, {6, 8192, 1, true},
                        {35, 2056, 3, false}};
  for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16})
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << "type " << static_cast<int>(t) << " rows " << c.rows << " cols " << c.cols
                                        << " n " << c.n);
      std::vector<float> wf = randn(c.rows * c.cols), x = randn(c.n * c.cols), bias = randn(c.rows);
      std::vector<uint16_t> wh = to_half(wf, t);
      for (size_t i = 0; i < wf.size(); ++i)
        if (t != WeightType::f32) wf[i] = t == WeightType::bf16 ? bf16_to_f32(wh[i]) : f16_to_f32(wh[i]);
      DeviceBuffer dw = t == WeightType::f32 ? up(wf) : up(wh), dx = up(x), db = up(bias), dy = out(c.n * c.rows);
      DeviceBuffer scratch(alloc_, kc::matmul_scratch_bytes(c.rows, c.cols, c.n, false), "scratch");
      kc::DeviceWeight w;
      w.type = t, w.dense = dw.get(), w.rows = c.rows, w.cols = c.cols, w.bias = c.bias ? db.get<float>() : nullptr;
      kc::matmul(w, dx.get<float>(), dy.get<float>(), c.n, scratch.get(), nullptr);
      std::vector<float> want(c.n * c.rows);
      kernels::ref::matmul({WeightType::f32, wf.data(), c.rows, c.cols, x.data(), want.data(), c.n});
      if (c.bias)
        for (int64_t i = 0; i < c.n * c.rows; ++i) want[i] += bias[i % c.rows];
      // Prefill splits X into two 16-bit parts (about 16 mantissa bits): a few f32 ulps more than the GEMV.
      const double tol = test::tolerance(WeightType::f32, c.cols) * (c.n > 8 && t != WeightType::f32 ? 16 : 1);
      EXPECT_TRUE(test::close(down<float>(dy, want.size()), want, tol, "matmul"));
    }
}

// A random MLX affine matrix: packed words, scales and biases (bf16, f16 or f32) like real ones.
struct Affine {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> s16, b16;
  std::vector<float> s32, b32;
  kernels::AffineWeight host;
};

Affine make_affine(std::mt19937& rng, int64_t rows, int64_t cols, int bits, int gs, kernels::ScaleType st) {
  Affine a;
  std::uniform_int_distribution<uint32_t> word;
  a.packed.resize(rows * cols * bits / 32);
  for (auto& v : a.packed) v = word(rng);
  std::normal_distribution<float> d(0.0f, 0.02f);
  const int64_t groups = rows * (cols / gs);
  for (int64_t g = 0; g < groups; ++g) {
    const float s = std::fabs(d(rng)) + 1e-3f, b = -s * static_cast<float>(1 << (bits - 1)) + d(rng);
    a.s32.push_back(s), a.b32.push_back(b);
    const bool f16 = st == kernels::ScaleType::f16;
    a.s16.push_back(f16 ? f32_to_f16(s) : f32_to_bf16(s)), a.b16.push_back(f16 ? f32_to_f16(b) : f32_to_bf16(b));
  }
  a.host = {a.packed.data(), nullptr, nullptr, st, bits, gs, rows, cols};
  a.host.scales = st != kernels::ScaleType::f32 ? static_cast<const void*>(a.s16.data()) : a.s32.data();
  a.host.biases = st != kernels::ScaleType::f32 ? static_cast<const void*>(a.b16.data()) : a.b32.data();
  return a;
}

kc::DeviceWeight CudaKernels::device_weight(int bits, WeightType dense, int64_t rows, int64_t cols,
                                           std::vector<DeviceBuffer>& keep) {
  kc::DeviceWeight w;
  w.rows = rows, w.cols = cols;
  if (bits) {
    Affine a = make_affine(rng_, rows, cols, bits, 64, kernels::ScaleType::bf16);
    keep.push_back(up(a.packed)), keep.push_back(up(a.s16)), keep.push_back(up(a.b16));
    w.affine = true, w.quant = a.host;
    w.quant.packed = keep[keep.size() - 3].get<uint32_t>(), w.quant.scales = keep[keep.size() - 2].get();
    w.quant.biases = keep.back().get();
  } else {
    keep.push_back(up(to_half(randn(rows * cols), dense)));
    w.type = dense, w.dense = keep.back().get();
  }
  return w;
}

kc::DeviceWeight CudaKernels::stacked_experts(int64_t E, int64_t rows, int64_t cols, std::vector<DeviceBuffer>& keep) {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> s16, b16;
  Affine first;
  for (int64_t e = 0; e < E; ++e) {
    Affine a = make_affine(rng_, rows, cols, 4, 64, kernels::ScaleType::bf16);
    packed.insert(packed.end(), a.packed.begin(), a.packed.end());
    s16.insert(s16.end(), a.s16.begin(), a.s16.end()), b16.insert(b16.end(), a.b16.begin(), a.b16.end());
    if (e == 0) first = std::move(a);
  }
  keep.push_back(up(packed)), keep.push_back(up(s16)), keep.push_back(up(b16));
  kc::DeviceWeight w;
  w.rows = rows, w.cols = cols, w.affine = true, w.quant = first.host;
  w.quant.packed = keep[keep.size() - 3].get<uint32_t>(), w.quant.scales = keep[keep.size() - 2].get();
  w.quant.biases = keep.back().get();
  w.stride_w = first.packed.size() * 4, w.stride_s = first.s16.size() * 2;
  return w;
}

// 4- and 8-bit decode runs on int16 activations (gemv.cu), as the CPU's integer path does, but with a scale per
// 32 values, whose maximum sits closer to the values' rms than a longer block's: the same rounding model, with
// twice tolerance.h's margin for the worst of a few thousand elements (seen at 1.0-1.8x the plain bound).
double gpu_int16_tolerance(int64_t cols) { return 2.0 * test::int16_activation_tolerance(cols); }

TEST_F(CudaKernels, AffineMatmulMatchesReference) {
  struct Case { int64_t rows, cols, n; };
  // Decode shapes (n <= 8) with rows left over from a warp's 4 and a block's 32, few rows over long columns (the
  // block's warps split them), and prefill shapes (n = 13, 77): under 2^20 weights the exact tiled kernel (a
  // router's 128 x 2048 in 8 column parts, 70 x 256 in 2, added in order), from 2^20
  // rows dequantized into bf16 hi + lo for cuBLAS ({1100, 1024, 13}; 16500 rows of 1024 take two passes of 16384
  // rows, 4-bit g64 only).
  // 4/8-bit matrices of >= 2^20 weights take int16 activations: x in shared memory ({300, 4096, 1}, {257, 4096,
  // 2}) or quantized per lane when that would not fit ({129, 8192, 8}); each scale type is a kernel of its own
  // there, and a group size that is no power of two (96: {384, 3072, 1}) takes the float path.
  const Case cases[] = {{33, 128, 1},    {300, 2048, 1}, {45, 192, 4},   {7, 4096, 2},   {129, 1024, 8},
                        {300, 4096, 1},  {257, 4096, 2}, {129, 8192, 8}, {384, 3072, 1}, {70, 256, 13},
                        {128, 2048, 77}, {1100, 1024, 13}, {16500, 1024, 13}};
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64, 96})
      for (auto st : {kernels::ScaleType::bf16, kernels::ScaleType::f16, kernels::ScaleType::f32})
        for (const Case& c : cases) {
          if (c.cols % gs) continue;
          if (c.rows > 10000 && (bits != 4 || gs != 64 || st != kernels::ScaleType::bf16)) continue;
          if ((gs == 96 || st == kernels::ScaleType::f16) && (bits != 4 && bits != 8)) continue;
          SCOPED_TRACE(::testing::Message() << bits << "-bit g" << gs << " rows " << c.rows << " cols " << c.cols
                                            << " n " << c.n);
          Affine a = make_affine(rng_, c.rows, c.cols, bits, gs, st);
          std::vector<float> x = randn(c.n * c.cols);
          const bool half = st != kernels::ScaleType::f32;
          DeviceBuffer dp = up(a.packed), ds = half ? up(a.s16) : up(a.s32), db = half ? up(a.b16) : up(a.b32);
          DeviceBuffer dx = up(x), dy = out(c.n * c.rows);
          DeviceBuffer scratch(alloc_, kc::matmul_scratch_bytes(c.rows, c.cols, c.n, true), "scratch");
          kc::DeviceWeight w;
          w.affine = true, w.rows = c.rows, w.cols = c.cols, w.quant = a.host;
          w.quant.packed = dp.get<uint32_t>(), w.quant.scales = ds.get(), w.quant.biases = db.get();
          kc::matmul(w, dx.get<float>(), dy.get<float>(), c.n, scratch.get(), nullptr);
          std::vector<float> want(c.n * c.rows);
          kernels::ref::matmul_affine({a.host, x.data(), want.data(), c.n});
          const bool int16 = (bits == 4 || bits == 8) && gs != 96 && c.n <= 8 && c.rows * c.cols >= (1 << 20);
          // Prefill from 2^20 weights splits X and W into bf16 hi + lo (about 16 mantissa bits each), as the dense
          // prefill does X.
          const bool parts = c.n > 8 && c.rows * c.cols >= (1 << 20);
          const double tol = int16 ? gpu_int16_tolerance(c.cols)
                                   : test::tolerance(WeightType::f32, c.cols) * (parts ? 16 : 1);
          EXPECT_TRUE(test::close(down<float>(dy, want.size()), want, tol, "matmul_affine"));
        }
}

// The gated MLP's gate / up GEMV with the activation inside (a warp reads rows i, i + 1 of both weights): the bits of
// the two products and gated_mul, on every path: 4-bit with x in shared memory, quantized per lane
// (8192 columns x 8 tokens), the float path (under 2^20 weights), 8-bit, bf16, f16 rows that do not line up (two
// launches and gated_mul), a chunk of 13 tokens (the GEMM), both activations, odd row counts; then gathered slots.
TEST_F(CudaKernels, GateUpPairEqualsTheTwoProductsAndGatedMul) {
  struct Case { int bits; WeightType dense; int64_t rows, cols, n; };  // bits 0: dense
  const Case cases[] = {{4, WeightType::bf16, 300, 4096, 1}, {4, WeightType::bf16, 257, 4096, 3},
                        {4, WeightType::bf16, 258, 4096, 1}, {4, WeightType::bf16, 129, 8192, 8},
                        {4, WeightType::bf16, 72, 256, 2},   {8, WeightType::bf16, 300, 4096, 1},
                        {0, WeightType::bf16, 97, 512, 1},   {0, WeightType::f16, 45, 100, 1},
                        {4, WeightType::bf16, 300, 4096, 13}};
  for (const Case& c : cases)
    for (auto act : {kc::GateActivation::silu, kc::GateActivation::gelu_tanh}) {
      SCOPED_TRACE(::testing::Message() << c.bits << "-bit rows " << c.rows << " cols " << c.cols << " n " << c.n
                                        << (act == kc::GateActivation::silu ? " silu" : " gelu"));
      std::vector<DeviceBuffer> keep;
      const kc::DeviceWeight gate = device_weight(c.bits, c.dense, c.rows, c.cols, keep);
      const kc::DeviceWeight upw = device_weight(c.bits, c.dense, c.rows, c.cols, keep);
      DeviceBuffer dx = up(randn(c.n * c.cols)), dg = out(c.n * c.rows), du = out(c.n * c.rows);
      DeviceBuffer want = out(c.n * c.rows), got = out(c.n * c.rows);
      DeviceBuffer scratch(alloc_, kc::matmul_scratch_bytes(c.rows, c.cols, c.n, true), "scratch");
      const ScopedDecodeOptions chosen({.gate_up_pair = true});
      const kc::GemvPart parts[] = {{gate, dg.get<float>()}, {upw, du.get<float>()}};
      kc::matmul_parts(parts, 2, dx.get<float>(), c.n, scratch.get(), nullptr);
      kc::gated_mul(act, dg.get<float>(), du.get<float>(), want.get<float>(), c.n * c.rows, nullptr);
      kc::matmul_gate_up(gate, upw, act, dx.get<float>(), dg.get<float>(), du.get<float>(), got.get<float>(), c.n,
                         scratch.get(), nullptr);
      EXPECT_EQ(down<float>(got, c.n * c.rows), down<float>(want, c.n * c.rows));
    }
  // Gathered: 6 slots (3 tokens x 2) over 4 experts of stacked 4-bit gate and up weights.
  const int64_t K = 2, slots = 6, rows = 768, cols = 2048;
  std::vector<DeviceBuffer> keep;
  const kc::DeviceWeight gate = stacked_experts(4, rows, cols, keep), upw = stacked_experts(4, rows, cols, keep);
  DeviceBuffer de = up(std::vector<int32_t>{3, 0, 2, 3, 1, 2}), dx = up(randn(3 * cols)), dg = out(slots * rows), du = out(slots * rows);
  DeviceBuffer want = out(slots * rows), got = out(slots * rows);
  const kc::GemvPart parts[] = {{gate, dg.get<float>()}, {upw, du.get<float>()}};
  kc::matmul_gathered(parts, 2, de.get<int32_t>(), dx.get<float>(), K, slots, nullptr);
  kc::gated_mul(kc::GateActivation::silu, dg.get<float>(), du.get<float>(), want.get<float>(), slots * rows, nullptr);
  const ScopedDecodeOptions chosen({.gate_up_pair = true});
  kc::matmul_gathered_gate_up(gate, upw, kc::GateActivation::silu, de.get<int32_t>(), dx.get<float>(), K, slots,
                              dg.get<float>(), du.get<float>(), got.get<float>(), nullptr);
  EXPECT_EQ(down<float>(got, slots * rows), down<float>(want, slots * rows)) << "gathered";
}

// Decode's fused layer (kc::GemvFusion): a 4/8-bit single-token GEMV that norms its input as it fills x into shared
// memory equals rmsnorm then the GEMV (the same formula; the sum of squares may add in another order, so within the
// int16 activations' bound), also as the gate/up pair; an accumulating GEMV (1-8 tokens) adds exactly the plain
// GEMV's floats to y; and only single tokens on the shared-x kernel say they take the norm (a kernel that cannot is
// refused, not run).
TEST_F(CudaKernels, FusedNormAndResidualAddEqualTheSeparateKernels) {
  struct Case { int bits; int64_t rows, cols, n; };
  const Case cases[] = {{4, 300, 4096, 1}, {8, 257, 4096, 3}, {8, 257, 4096, 1}, {4, 520, 2048, 1}, {4, 4100, 1024, 8}};
  const float eps = 1e-6f;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.bits << "-bit rows " << c.rows << " cols " << c.cols << " n " << c.n);
    std::vector<DeviceBuffer> keep;
    auto weight = [&] {
      Affine a = make_affine(rng_, c.rows, c.cols, c.bits, 64, kernels::ScaleType::bf16);
      keep.push_back(up(a.packed)), keep.push_back(up(a.s16)), keep.push_back(up(a.b16));
      kc::DeviceWeight w;
      w.rows = c.rows, w.cols = c.cols, w.affine = true, w.quant = a.host;
      w.quant.packed = keep[keep.size() - 3].get<uint32_t>(), w.quant.scales = keep[keep.size() - 2].get();
      w.quant.biases = keep.back().get();
      return w;
    };
    const kc::DeviceWeight w = weight(), w2 = weight();
    EXPECT_EQ(kc::matmul_norms_input(w, c.n), c.n == 1);
    std::vector<float> norm_w = randn(c.cols, 0.3f);
    for (float& v : norm_w) v += 1.0f;
    DeviceBuffer dx = up(randn(c.n * c.cols, 3.0f)), dnw = up(norm_w), dh = out(c.n * c.cols);
    DeviceBuffer want = out(c.n * c.rows), got = out(c.n * c.rows);
    kc::rmsnorm(dx.get<float>(), dnw.get<float>(), dh.get<float>(), c.n, c.cols, eps, nullptr);
    kc::matmul(w, dh.get<float>(), want.get<float>(), c.n, nullptr, nullptr);
    if (c.n == 1) {  // the input's norm, alone and in the gate/up pair
      kc::matmul(w, dx.get<float>(), got.get<float>(), 1, nullptr, nullptr, {{dnw.get<float>(), eps}});
      test::expect_close(down<float>(got, c.rows), down<float>(want, c.rows), gpu_int16_tolerance(c.cols),
                         "normed input");
      DeviceBuffer g = out(c.rows), u = out(c.rows), pair_want = out(c.rows), pair_got = out(c.rows);
      const auto act = kc::GateActivation::silu;
      kc::matmul_gate_up(w, w2, act, dh.get<float>(), g.get<float>(), u.get<float>(), pair_want.get<float>(), 1,
                         nullptr, nullptr);
      kc::matmul_gate_up(w, w2, act, dx.get<float>(), g.get<float>(), u.get<float>(), pair_got.get<float>(), 1,
                         nullptr, nullptr, {dnw.get<float>(), eps});
      test::expect_close(down<float>(pair_got, c.rows), down<float>(pair_want, c.rows), 2 * gpu_int16_tolerance(c.cols),
                         "gate/up over the normed input");
    }
    // y += x . W^T: the plain GEMV's floats added to what y held.
    const std::vector<float> y0 = randn(c.n * c.rows);
    DeviceBuffer acc = up(y0);
    kc::matmul(w, dh.get<float>(), acc.get<float>(), c.n, nullptr, nullptr, {.norm = {}, .accumulate = true});
    const std::vector<float> plain = down<float>(want, c.n * c.rows);
    std::vector<float> sum(y0.size());
    for (size_t i = 0; i < y0.size(); ++i) sum[i] = y0[i] + plain[i];
    EXPECT_EQ(down<float>(acc, c.n * c.rows), sum) << "accumulated";
  }
  // A bf16 weight and a matrix under 2^20 weights (the float path) cannot take the norm; asking runs nothing.
  kc::DeviceWeight dense;
  dense.type = WeightType::bf16, dense.rows = 512, dense.cols = 4096;
  DeviceBuffer dw = up(to_half(randn(512 * 4096), WeightType::bf16)), dx = up(randn(4096)), dy = out(512);
  DeviceBuffer dnw = up(randn(4096));
  dense.dense = dw.get();
  EXPECT_FALSE(kc::matmul_norms_input(dense, 1));
  EXPECT_THROW(kc::matmul(dense, dx.get<float>(), dy.get<float>(), 1, nullptr, nullptr, {{dnw.get<float>(), 1e-6f}}),
               Error);
  Affine small = make_affine(rng_, 64, 1024, 4, 64, kernels::ScaleType::bf16);
  kc::DeviceWeight sw;
  sw.rows = 64, sw.cols = 1024, sw.affine = true, sw.quant = small.host;
  EXPECT_FALSE(kc::matmul_norms_input(sw, 1));
}

// Slots pick experts of a stacked weight; each slot must equal its expert's own GEMV.
TEST_F(CudaKernels, GatheredExpertMatmulMatchesReference) {
  const int64_t E = 5, K = 2, n_tok = 3;
  const std::vector<int32_t> experts = {3, 0, 4, 3, 1, 4};  // [n_tok, K]
  // Small experts (float path) and experts of 2^20 weights (int16 activations in shared memory).
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{72, 256}, {512, 2048}})
  for (bool affine : {false, true}) {
    SCOPED_TRACE(::testing::Message() << (affine ? "affine 4-bit " : "bf16 ") << rows << " x " << cols);
    const bool int16 = affine && rows * cols >= (1 << 20);
    std::vector<Affine> qs;
    std::vector<float> wf(E * rows * cols);
    std::vector<uint32_t> packed;
    std::vector<uint16_t> s16, b16, wh;
    for (int64_t e = 0; e < E; ++e) {
      qs.push_back(make_affine(rng_, rows, cols, 4, 64, kernels::ScaleType::bf16));
      packed.insert(packed.end(), qs.back().packed.begin(), qs.back().packed.end());
      s16.insert(s16.end(), qs.back().s16.begin(), qs.back().s16.end());
      b16.insert(b16.end(), qs.back().b16.begin(), qs.back().b16.end());
    }
    wf = randn(E * rows * cols);
    wh = to_half(wf, WeightType::bf16);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(wh[i]);
    std::vector<float> x = randn(n_tok * cols);
    DeviceBuffer dp = up(packed), ds = up(s16), db = up(b16), dw = up(wh), de = up(experts), dx = up(x);
    DeviceBuffer dy = out(n_tok * K * rows);
    kc::DeviceWeight w;
    w.rows = rows, w.cols = cols, w.affine = affine;
    if (affine) {
      w.quant = qs[0].host;
      w.quant.packed = dp.get<uint32_t>(), w.quant.scales = ds.get(), w.quant.biases = db.get();
      w.stride_w = qs[0].packed.size() * 4, w.stride_s = qs[0].s16.size() * 2;
    } else {
      w.type = WeightType::bf16, w.dense = dw.get(), w.stride_w = rows * cols * 2;
    }
    const kc::GemvPart part{w, dy.get<float>()};
    kc::matmul_gathered(&part, 1, de.get<int32_t>(), dx.get<float>(), K, n_tok * K, nullptr);
    const std::vector<float> got = down<float>(dy, n_tok * K * rows);
    for (int64_t s = 0; s < n_tok * K; ++s) {
      std::vector<float> want(rows);
      const float* xs = x.data() + (s / K) * cols;
      if (affine) kernels::ref::matmul_affine({qs[experts[s]].host, xs, want.data(), 1});
      else kernels::ref::matmul({WeightType::f32, wf.data() + experts[s] * rows * cols, rows, cols, xs, want.data(), 1});
      EXPECT_TRUE(test::close(std::span(got).subspan(s * rows, rows), want,
                              int16 ? gpu_int16_tolerance(cols) : test::tolerance(WeightType::f32, cols),
                              "gathered slot"));
    }
  }
}

// The grouped expert GEMM (MoE prefill) against the reference per slot, at f32 precision (tensor-core accumulation's
// bound): 4-bit g64 and 8-bit g32 (a thread per packed word), 3-bit (a level at a time), f16 (two bf16 parts), bf16
// (columns not a multiple of the k tile); rows
// not a multiple of the 128-row tile; an expert with more slots than one 32-slot tile, one with none; slots reading
// a token's row (x_div = K) and their own (x_div = 1). Then the same slots in reverse order: each slot's output has
// the same bits (a slot's dot products do not depend on which slots share its tile).
TEST_F(CudaKernels, GroupedExpertMatmulMatchesReference) {
  const int64_t E = 6, K = 2, n_tok = 40, slots = n_tok * K, rows = 200;
  std::vector<int32_t> experts(slots);
  std::uniform_int_distribution<int> pick(0, static_cast<int>(E) - 1);
  for (int64_t t = 0; t < n_tok; ++t) {  // expert 3 in most tokens (two tiles of it), expert 2 in none
    int a = t % 8 == 7 ? 0 : 3, b = pick(rng_);
    while (b == a || b == 2) b = pick(rng_);
    experts[t * K] = a, experts[t * K + 1] = b;
  }
  struct Case { bool affine; int bits, gs; WeightType type; int64_t cols; };
  for (const Case c : {Case{true, 4, 64, WeightType::bf16, 256}, Case{true, 8, 32, WeightType::bf16, 160},
                       Case{true, 3, 64, WeightType::bf16, 192}, Case{false, 0, 0, WeightType::bf16, 200},
                       Case{false, 0, 0, WeightType::f16, 96}})
    for (int64_t x_div : {K, int64_t{1}}) {
      const int64_t cols = c.cols;
      SCOPED_TRACE(::testing::Message() << (c.affine ? "affine " + std::to_string(c.bits) + "-bit" : "dense") << " "
                                        << rows << " x " << cols << ", x_div " << x_div);
      std::vector<Affine> qs;
      std::vector<uint32_t> packed;
      std::vector<uint16_t> s16, b16;
      for (int64_t e = 0; e < E && c.affine; ++e) {
        qs.push_back(make_affine(rng_, rows, cols, c.bits, c.gs, kernels::ScaleType::bf16));
        packed.insert(packed.end(), qs.back().packed.begin(), qs.back().packed.end());
        s16.insert(s16.end(), qs.back().s16.begin(), qs.back().s16.end());
        b16.insert(b16.end(), qs.back().b16.begin(), qs.back().b16.end());
      }
      std::vector<float> wf = randn(E * rows * cols);
      const std::vector<uint16_t> wh = to_half(wf, c.type);
      for (size_t i = 0; i < wf.size(); ++i) wf[i] = c.type == WeightType::bf16 ? bf16_to_f32(wh[i]) : f16_to_f32(wh[i]);
      const std::vector<float> bias = randn(E * rows);
      const int64_t x_rows = slots / x_div;
      const std::vector<float> x = randn(x_rows * cols);
      DeviceBuffer dp = up(packed.empty() ? std::vector<uint32_t>{0} : packed), ds = up(s16.empty() ? wh : s16),
                   db = up(b16.empty() ? wh : b16), dw = up(wh), dbias = up(bias);
      kc::DeviceWeight w;
      w.rows = rows, w.cols = cols, w.affine = c.affine, w.bias = dbias.get<float>();
      if (c.affine) {
        w.quant = qs[0].host;
        w.quant.packed = dp.get<uint32_t>(), w.quant.scales = ds.get(), w.quant.biases = db.get();
        w.stride_w = qs[0].packed.size() * 4, w.stride_s = qs[0].s16.size() * 2;
      } else {
        w.type = c.type, w.dense = dw.get(), w.stride_w = rows * cols * 2;
      }
      // Runs the grouped GEMM for a routing and slot -> x row map (x_div 1: the slot's own row of xs).
      auto run = [&](const std::vector<int32_t>& route, const std::vector<float>& xs) {
        DeviceBuffer de = up(route), dx = up(xs), dy = out(slots * rows);
        const int64_t rows_of_x = static_cast<int64_t>(xs.size()) / cols;
        DeviceBuffer groups(alloc_, kc::expert_groups_bytes(slots, E, kc::grouped_x_values(rows_of_x, cols)), "groups");
        kc::group_slots(de.get<int32_t>(), slots, E, groups.get(), nullptr);
        const kc::GemvPart part{w, dy.get<float>()};
        kc::matmul_grouped(&part, 1, groups.get(), groups.bytes(), slots, E, dx.get<float>(), x_div, nullptr);
        return down<float>(dy, slots * rows);
      };
      const std::vector<float> got = run(experts, x);
      for (int64_t s = 0; s < slots; ++s) {
        std::vector<float> want(rows);
        const float* xs = x.data() + (s / x_div) * cols;
        const int32_t e = experts[s];
        if (c.affine) kernels::ref::matmul_affine({qs[e].host, xs, want.data(), 1});
        else kernels::ref::matmul({WeightType::f32, wf.data() + e * rows * cols, rows, cols, xs, want.data(), 1});
        for (int64_t r = 0; r < rows; ++r) want[r] += bias[e * rows + r];
        EXPECT_TRUE(test::close(std::span(got).subspan(s * rows, rows), want,
                                test::tensor_core_f32_tolerance(cols), "grouped slot"));
      }
      if (x_div != 1) continue;
      std::vector<int32_t> reversed(experts.rbegin(), experts.rend());
      std::vector<float> x_reversed(x.size());
      for (int64_t s = 0; s < slots; ++s)
        std::copy_n(x.data() + s * cols, cols, x_reversed.data() + (slots - 1 - s) * cols);
      const std::vector<float> got_reversed = run(reversed, x_reversed);
      for (int64_t s = 0; s < slots; ++s)
        EXPECT_EQ(0, std::memcmp(got.data() + s * rows, got_reversed.data() + (slots - 1 - s) * rows, rows * 4))
            << "slot " << s;
    }
}

TEST_F(CudaKernels, NormRopeActivationsMatchReference) {
  {  // rmsnorm, in place and not, odd dims
    for (int64_t dim : {1, 300, 4097}) {
      const int64_t rows = 7;
      std::vector<float> x = randn(rows * dim), w = randn(dim), want(rows * dim);
      DeviceBuffer dx = up(x), dw = up(w), dy = out(rows * dim);
      kc::rmsnorm(dx.get<float>(), dw.get<float>(), dy.get<float>(), rows, dim, 1e-6f, nullptr);
      kernels::ref::rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f);
      EXPECT_TRUE(test::close(down<float>(dy, want.size()), want, test::tolerance(WeightType::f32, dim), "rmsnorm"));
    }
  }
  {  // rope: partial rotary dims, scaling, large positions
    const int64_t n = 5, heads = 3, hd = 64, rot = 32;
    std::vector<float> x = randn(n * heads * hd), inv(rot / 2);
    for (int64_t i = 0; i < rot / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / rot);
    const std::vector<int32_t> pos = {0, 1, 77, 4095, 100001};
    DeviceBuffer dx = up(x), di = up(inv), dp = up(pos);
    kc::qk_norm_rope(dx.get<float>(), nullptr, n, heads, 0, hd, rot, nullptr, nullptr, 1e-6f, dp.get<int32_t>(),
                     di.get<float>(), 1.25f, nullptr);  // queries alone, no norm: the rotation by itself
    kernels::ref::rope({x.data(), n, heads, hd, rot, pos.data(), inv.data(), 1.25f});
    EXPECT_TRUE(test::close(down<float>(dx, x.size()), x, test::tolerance(WeightType::f32, 1), "rope"));
  }
  {  // the residual add fused with the next norm: x += y, h = norm(x); vector path (4096) and fallback (300)
    for (int64_t dim : {300, 4096}) {
      const int64_t rows = 3;
      std::vector<float> x = randn(rows * dim), y = randn(rows * dim), w = randn(dim), want(rows * dim);
      DeviceBuffer dx = up(x), dy = up(y), dw = up(w), dh = out(rows * dim);
      kc::add_rmsnorm(dx.get<float>(), dy.get<float>(), dw.get<float>(), dh.get<float>(), rows, dim, 1e-6f, nullptr);
      for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
      kernels::ref::rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f);
      EXPECT_TRUE(test::close(down<float>(dx, x.size()), x, test::tolerance(WeightType::f32, 1), "add_rmsnorm x"));
      EXPECT_TRUE(test::close(down<float>(dh, want.size()), want, test::tolerance(WeightType::f32, dim), "add_rmsnorm h"));
    }
  }
  {  // q/k norm + rope in one launch: with per-head norms (qwen3) and without (llama), partial rotary
    const int64_t n = 3, heads = 4, kv_heads = 2, hd = 96, rot = 64;
    std::vector<float> inv(rot / 2);
    for (int64_t i = 0; i < rot / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / rot);
    const std::vector<int32_t> pos = {5, 4095, 100001};
    for (bool with_norm : {true, false}) {
      SCOPED_TRACE(with_norm ? "with q/k norms" : "rope only");
      std::vector<float> q = randn(n * heads * hd), k = randn(n * kv_heads * hd), qn = randn(hd), kn = randn(hd);
      DeviceBuffer dq = up(q), dk = up(k), dqn = up(qn), dkn = up(kn), di = up(inv), dp = up(pos);
      kc::qk_norm_rope(dq.get<float>(), dk.get<float>(), n, heads, kv_heads, hd, rot, with_norm ? dqn.get<float>() : nullptr,
                       with_norm ? dkn.get<float>() : nullptr, 1e-6f, dp.get<int32_t>(), di.get<float>(), 1.25f, nullptr);
      if (with_norm) {
        kernels::ref::rmsnorm(q.data(), qn.data(), q.data(), n * heads, hd, 1e-6f);
        kernels::ref::rmsnorm(k.data(), kn.data(), k.data(), n * kv_heads, hd, 1e-6f);
      }
      kernels::ref::rope({q.data(), n, heads, hd, rot, pos.data(), inv.data(), 1.25f});
      kernels::ref::rope({k.data(), n, kv_heads, hd, rot, pos.data(), inv.data(), 1.25f});
      EXPECT_TRUE(test::close(down<float>(dq, q.size()), q, test::tolerance(WeightType::f32, hd), "qk_norm_rope q"));
      EXPECT_TRUE(test::close(down<float>(dk, k.size()), k, test::tolerance(WeightType::f32, hd), "qk_norm_rope k"));
    }
  }
  {  // q/k norm + rope with the KV rows written in the same launch: the same q, k and cache bytes as qk_norm_rope
     // then kv_write (three blocks of 16 positions, one untouched)
    const int64_t n = 3, heads = 4, kv_heads = 2, hd = 96, rot = 64, B = 16, n_blocks = 4;
    std::vector<float> inv(rot / 2);
    for (int64_t i = 0; i < rot / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / rot);
    const std::vector<int32_t> pos = {5, 17, 47};
    const std::vector<float> q = randn(n * heads * hd), k = randn(n * kv_heads * hd), v = randn(n * kv_heads * hd),
                             qn = randn(hd), kn = randn(hd);
    const int64_t block_halves = 2 * kv_heads * B * hd;
    DeviceBuffer dqn = up(qn), dkn = up(kn), di = up(inv), dp = up(pos), dv = up(v);
    std::vector<std::vector<uint16_t>> got;
    std::vector<std::vector<float>> got_qk;
    for (bool fused : {false, true}) {
      DeviceBuffer dq = up(q), dk = up(k), cache = up(std::vector<uint16_t>(n_blocks * block_halves, 0x7E00));
      std::vector<uint16_t*> ptrs;
      for (int64_t b = 0; b < n_blocks; ++b) ptrs.push_back(cache.get<uint16_t>() + b * block_halves);
      DeviceBuffer table = up(ptrs);
      const kc::KvBlocks kv{table.get<uint16_t*>(), B, kv_heads, hd};
      if (fused) {
        kc::qk_norm_rope_kv_write(dq.get<float>(), dk.get<float>(), dv.get<float>(), kv, n, heads, rot, dqn.get<float>(),
                                  dkn.get<float>(), 1e-6f, dp.get<int32_t>(), di.get<float>(), 1.25f, nullptr);
      } else {
        kc::qk_norm_rope(dq.get<float>(), dk.get<float>(), n, heads, kv_heads, hd, rot, dqn.get<float>(), dkn.get<float>(),
                         1e-6f, dp.get<int32_t>(), di.get<float>(), 1.25f, nullptr);
        kc::kv_write(kv, dk.get<float>(), dv.get<float>(), n, dp.get<int32_t>(), nullptr);
      }
      got.push_back(down<uint16_t>(cache, n_blocks * block_halves));
      std::vector<float> qk = down<float>(dq, q.size()), kk = down<float>(dk, k.size());
      qk.insert(qk.end(), kk.begin(), kk.end());
      got_qk.push_back(qk);
    }
    EXPECT_EQ(got[0], got[1]) << "cache bytes of qk_norm_rope_kv_write vs qk_norm_rope + kv_write";
    EXPECT_EQ(got_qk[0], got_qk[1]) << "q and k of qk_norm_rope_kv_write vs qk_norm_rope";
    int64_t written = 0;
    for (uint16_t h : got[1]) written += h != 0x7E00;
    EXPECT_EQ(written, 2 * n * kv_heads * hd) << "every K and V element of the three positions, nothing else";
  }
  {  // activations
    const int64_t n = 1001;
    std::vector<float> g = randn(n, 3.0f), u = randn(n), want(n);
    DeviceBuffer dg = up(g), du = up(u), dy = out(n);
    kc::gated_mul(kc::GateActivation::silu, dg.get<float>(), du.get<float>(), dy.get<float>(), n, nullptr);
    kernels::ref::silu_mul(g.data(), u.data(), want.data(), n);
    EXPECT_TRUE(test::close(down<float>(dy, n), want, test::tolerance(WeightType::f32, 1), "silu_mul"));
    kc::gated_mul(kc::GateActivation::gelu_tanh, dg.get<float>(), du.get<float>(), dy.get<float>(), n, nullptr);
    kernels::ref::gelu_tanh_mul(g.data(), u.data(), want.data(), n);
    EXPECT_TRUE(test::close(down<float>(dy, n), want, test::tolerance(WeightType::f32, 1), "gelu_tanh_mul"));
  }
}

TEST_F(CudaKernels, RoutingAndCombineMatchReference) {
  for (int64_t E : {8, 13, 64})
    for (bool renorm : {true, false}) {
      const int64_t n = 9, k = 4, H = 33;
      std::vector<float> logits = randn(n * E, 2.0f);
      DeviceBuffer dl = up(logits), de = up(std::vector<int32_t>(n * k, -1)), dw = out(n * k);
      kc::route_topk(dl.get<float>(), n, E, k, renorm, de.get<int32_t>(), dw.get<float>(), nullptr);
      const auto got_e = down<int32_t>(de, n * k);
      const auto got_w = down<float>(dw, n * k);
      std::vector<int32_t> want_e(n * k);
      std::vector<float> want_w(n * k);
      for (int64_t t = 0; t < n; ++t)
        kernels::ref::route_topk(logits.data() + t * E, E, k, renorm, want_e.data() + t * k, want_w.data() + t * k);
      EXPECT_EQ(got_e, want_e) << "E " << E;
      EXPECT_TRUE(test::close(got_w, want_w, test::tolerance(WeightType::f32, E), "routing weights"));
      // combine: ascending expert order, weighted
      std::vector<float> slot_out = randn(n * k * H), want(n * H, 0.0f);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < k; ++j)
          for (int64_t d = 0; d < H; ++d) want[t * H + d] += want_w[t * k + j] * slot_out[(t * k + j) * H + d];
      DeviceBuffer ds = up(slot_out), dy = out(n * H);
      kc::moe_combine(ds.get<float>(), de.get<int32_t>(), dw.get<float>(), n, k, H, dy.get<float>(), nullptr);
      EXPECT_TRUE(test::close(down<float>(dy, n * H), want, test::tolerance(WeightType::f32, k), "moe_combine"));
    }
  // combine fused with the residual add and the next norm: the same x and h as moe_combine then add_rmsnorm, bit
  // for bit, at a hidden size the fused kernel takes (2048) and one it leaves to the two kernels (33)
  for (int64_t H : {2048, 33}) {
    SCOPED_TRACE(::testing::Message() << "hidden " << H);
    const int64_t n = 3, k = 8, E = 128;
    std::vector<float> logits = randn(n * E, 2.0f), slot_out = randn(n * k * H), x = randn(n * H), w = randn(H);
    DeviceBuffer dl = up(logits), de = up(std::vector<int32_t>(n * k, -1)), dwt = out(n * k), ds = up(slot_out), dw = up(w);
    kc::route_topk(dl.get<float>(), n, E, k, true, de.get<int32_t>(), dwt.get<float>(), nullptr);
    std::vector<std::vector<float>> got;
    for (bool fused : {false, true}) {
      DeviceBuffer dx = up(x), dy = out(n * H), dh = out(n * H);
      if (fused) {
        kc::moe_combine_add_rmsnorm(dx.get<float>(), ds.get<float>(), de.get<int32_t>(), dwt.get<float>(), k,
                                    dy.get<float>(), dw.get<float>(), dh.get<float>(), n, H, 1e-6f, nullptr);
      } else {
        kc::moe_combine(ds.get<float>(), de.get<int32_t>(), dwt.get<float>(), n, k, H, dy.get<float>(), nullptr);
        kc::add_rmsnorm(dx.get<float>(), dy.get<float>(), dw.get<float>(), dh.get<float>(), n, H, 1e-6f, nullptr);
      }
      std::vector<float> xh = down<float>(dx, n * H), hh = down<float>(dh, n * H);
      xh.insert(xh.end(), hh.begin(), hh.end());
      got.push_back(xh);
    }
    EXPECT_EQ(got[0], got[1]) << "x and h of moe_combine_add_rmsnorm vs moe_combine + add_rmsnorm";
  }
}

// The router GEMV whose last block routes (matmul_route) picks the experts and weights route_topk picks from the same
// logits, bit for bit: 4-bit routers on the float path and bf16 ones, 8 and 128 experts, k 2 and 8, 1 and 3 tokens,
// with and without renormalisation; twice in a row (the counter re-armed); a chunk (matmul, then route_topk) and a
// router of 2^20 weights (the integer path: two launches).
TEST_F(CudaKernels, FusedRoutingEqualsRouterThenTopK) {
  struct Case { int bits; int64_t E, H, n, k; bool renorm; };  // bits 0: bf16
  const ScopedDecodeOptions chosen({.fused_routing = true});
  const Case cases[] = {{4, 128, 2048, 1, 8, true}, {4, 8, 1024, 3, 2, false}, {0, 128, 512, 1, 8, false},
                        {0, 8, 4096, 2, 2, true},   {4, 128, 2048, 13, 8, true}, {4, 512, 2048, 1, 8, true}};
  DeviceBuffer done = up(std::vector<uint32_t>{0});
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.bits << "-bit E " << c.E << " H " << c.H << " n " << c.n << " k " << c.k);
    Affine a = make_affine(rng_, c.E, c.H, 4, 64, kernels::ScaleType::bf16);
    DeviceBuffer dp = up(a.packed), ds = up(a.s16), db = up(a.b16), dw = up(to_half(randn(c.E * c.H), WeightType::bf16));
    kc::DeviceWeight w;
    w.rows = c.E, w.cols = c.H;
    if (c.bits) {
      w.affine = true, w.quant = a.host;
      w.quant.packed = dp.get<uint32_t>(), w.quant.scales = ds.get(), w.quant.biases = db.get();
    } else {
      w.type = WeightType::bf16, w.dense = dw.get();
    }
    DeviceBuffer dx = up(randn(c.n * c.H)), logits = out(c.n * c.E);
    DeviceBuffer scratch(alloc_, kc::matmul_scratch_bytes(c.E, c.H, c.n, true), "scratch");
    DeviceBuffer want_e = up(std::vector<int32_t>(c.n * c.k, -1)), want_w = out(c.n * c.k);
    kc::matmul(w, dx.get<float>(), logits.get<float>(), c.n, scratch.get(), nullptr);
    kc::route_topk(logits.get<float>(), c.n, c.E, c.k, c.renorm, want_e.get<int32_t>(), want_w.get<float>(), nullptr);
    for (int rep = 0; rep < 2; ++rep) {
      DeviceBuffer got_e = up(std::vector<int32_t>(c.n * c.k, -1)), got_w = out(c.n * c.k), got_l = out(c.n * c.E);
      const kc::RouteTail tail{got_e.get<int32_t>(), got_w.get<float>(), c.k, c.renorm, done.get<unsigned>()};
      kc::matmul_route(w, dx.get<float>(), got_l.get<float>(), c.n, tail, scratch.get(), nullptr);
      EXPECT_EQ(down<float>(got_l, c.n * c.E), down<float>(logits, c.n * c.E)) << "logits, run " << rep;
      EXPECT_EQ(down<int32_t>(got_e, c.n * c.k), down<int32_t>(want_e, c.n * c.k)) << "experts, run " << rep;
      EXPECT_EQ(down<float>(got_w, c.n * c.k), down<float>(want_w, c.n * c.k)) << "weights, run " << rep;
      EXPECT_EQ(down<uint32_t>(done, 1)[0], 0u) << "the counter is re-armed";
    }
  }
}

// Tokens whose softmax is NaN (a NaN logit, a +inf one, all -inf) beside an ordinary one: route_topk, in the
// register form (E <= 256) and the loop form (E 300), and the router GEMV's routing tail pick what the CPU picks:
// the first k experts by index with NaN weights, never index E (a NaN once sent the gathered GEMVs past the experts:
// an illegal access, twenty-fourth session).
TEST_F(CudaKernels, RoutingOfNanProbabilitiesStaysInRange) {
  const float inf = std::numeric_limits<float>::infinity();
  // NaN where the CPU's weight is NaN, else within float rounding of it (the device's expf against the CPU's exp).
  auto same = [](const std::vector<float>& got, const std::vector<float>& want) {
    for (size_t i = 0; i < want.size(); ++i)
      if (std::isnan(want[i]) ? !std::isnan(got[i]) : !(std::fabs(got[i] - want[i]) <= 1e-5f * std::fabs(want[i])))
        return false;
    return true;
  };
  for (int64_t E : {8, 128, 300}) {
    SCOPED_TRACE(::testing::Message() << "E " << E);
    const int64_t n = 4, k = 8;
    std::vector<float> logits = randn(n * E, 2.0f);
    logits[0 * E + E / 2] = std::numeric_limits<float>::quiet_NaN();
    logits[1 * E + E - 1] = inf;
    std::fill(logits.begin() + 2 * E, logits.begin() + 3 * E, -inf);  // token 2; token 3 stays ordinary
    std::vector<int32_t> want_e(n * k);
    std::vector<float> want_w(n * k);
    for (int64_t t = 0; t < n; ++t)
      kernels::cpu::route_topk(logits.data() + t * E, E, k, true, want_e.data() + t * k, want_w.data() + t * k);
    DeviceBuffer dl = up(logits), de = up(std::vector<int32_t>(n * k, -1)), dw = out(n * k);
    kc::route_topk(dl.get<float>(), n, E, k, true, de.get<int32_t>(), dw.get<float>(), nullptr);
    EXPECT_EQ(down<int32_t>(de, n * k), want_e);
    EXPECT_TRUE(same(down<float>(dw, n * k), want_w)) << "weights: NaN where the CPU's are, its values elsewhere";
  }
  // The routing tail of the router GEMV (bf16, 128 experts): a NaN in a token's activations makes its logits NaN.
  const ScopedDecodeOptions chosen({.fused_routing = true});
  const int64_t E = 128, H = 512, n = 2, k = 8;
  DeviceBuffer dw = up(to_half(randn(E * H), WeightType::bf16));
  kc::DeviceWeight w;
  w.rows = E, w.cols = H, w.type = WeightType::bf16, w.dense = dw.get();
  std::vector<float> x = randn(n * H);
  x[3] = std::numeric_limits<float>::quiet_NaN();  // token 0
  DeviceBuffer dx = up(x), logits = out(n * E), done = up(std::vector<uint32_t>{0});
  DeviceBuffer scratch(alloc_, kc::matmul_scratch_bytes(E, H, n, true), "scratch");
  DeviceBuffer got_e = up(std::vector<int32_t>(n * k, -1)), got_w = out(n * k);
  const kc::RouteTail tail{got_e.get<int32_t>(), got_w.get<float>(), k, true, done.get<unsigned>()};
  kc::matmul_route(w, dx.get<float>(), logits.get<float>(), n, tail, scratch.get(), nullptr);
  const std::vector<float> host_logits = down<float>(logits, n * E);
  std::vector<int32_t> want_e(n * k);
  std::vector<float> want_w(n * k);
  for (int64_t t = 0; t < n; ++t)
    kernels::cpu::route_topk(host_logits.data() + t * E, E, k, true, want_e.data() + t * k, want_w.data() + t * k);
  EXPECT_EQ(down<int32_t>(got_e, n * k), want_e);
  EXPECT_TRUE(same(down<float>(got_w, n * k), want_w)) << "weights of the routing tail";
}

TEST_F(CudaKernels, EmbeddingRowsMatchDequantizedRows) {
  const int64_t vocab = 50, H = 128;
  const std::vector<int32_t> tokens = {0, 49, 7, 7, 23};
  Affine a = make_affine(rng_, vocab, H, 4, 32, kernels::ScaleType::bf16);
  DeviceBuffer dp = up(a.packed), ds = up(a.s16), db = up(a.b16), dt = up(tokens), dy = out(tokens.size() * H);
  kc::DeviceWeight w;
  w.affine = true, w.rows = vocab, w.cols = H, w.quant = a.host;
  w.quant.packed = dp.get<uint32_t>(), w.quant.scales = ds.get(), w.quant.biases = db.get();
  kc::embed_rows(w, dt.get<int32_t>(), tokens.size(), 2.5f, dy.get<float>(), nullptr);
  std::vector<float> want(tokens.size() * H);
  for (size_t t = 0; t < tokens.size(); ++t) {
    kernels::ref::dequantize_affine_row(a.host, tokens[t], want.data() + t * H);
    for (int64_t i = 0; i < H; ++i) want[t * H + i] *= 2.5f;
  }
  EXPECT_TRUE(test::close(down<float>(dy, want.size()), want, test::tolerance(WeightType::f32, 1), "embed_rows"));
}

// A device KV layer (KvLayerBlocked over device blocks, written and attended by the CUDA kernels) against the
// reference attention over the same f16-rounded history, and its blocks byte for byte against the CPU's f16 codec
// in the same layer spec: a prefill chunk, then decode steps, across block boundaries (blocks of 32 positions),
// with sliding windows releasing blocks, and long enough to split the keys.
TEST_F(CudaKernels, DeviceKvLayerMatchesReferenceAndCpuBlocks) {
  struct Case { int64_t heads, kv_heads, hd, window; float softcap; int64_t prefill, chunk, decode; };
  // prefill: positions appended (and attended) before the checked chunk and the decode steps. Chunks of
  // kPrefillAttentionMinQueries or more go to the tiled tensor-core kernel (the prefixes up to 400 are checked too),
  // fewer (decode steps, chunks of 3 or 5) to flash-decoding, and from kTiledDecodeMinPositions of history to the
  // tiled kernel with the history split over blocks: GQA 3 (rows of a tile not a multiple of the group), head_dim 48
  // and 80, 80 queries after 5000 positions, decode after 33000 positions, a window of 2000 over 33000 positions
  // with softcap (the splits over a window), and on the split decode head_dim 256 (the query read from shared
  // memory) and GQA 5; GQA 7 on flash-decoding (its kernels are instantiated per group size up to 1, 2, 4, 8).
  const Case cases[] = {{8, 2, 64, 0, 0.0f, 300, 5, 3},     {4, 4, 128, 100, 0.0f, 333, 5, 2},
                        {6, 1, 96, 0, 50.0f, 40, 5, 2},     {32, 8, 128, 0, 0.0f, 5000, 80, 2},
                        {2, 1, 256, 16, 0.0f, 70, 5, 2},    {6, 2, 64, 0, 0.0f, 100, 37, 1},
                        {6, 2, 48, 50, 30.0f, 200, 20, 1},  {4, 2, 80, 0, 0.0f, 90, 17, 1},
                        {16, 2, 256, 0, 0.0f, 150, 64, 1}, {8, 2, 128, 0, 0.0f, 33000, 5, 2},
                        {4, 2, 64, 2000, 30.0f, 33000, 3, 1}, {16, 2, 256, 0, 0.0f, 33000, 3, 1},
                        {10, 2, 128, 0, 0.0f, 33000, 2, 2}, {14, 2, 64, 0, 0.0f, 300, 5, 2}};
  constexpr int64_t B = 32;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.heads << "/" << c.kv_heads << " hd " << c.hd << " window "
                                      << c.window << " softcap " << c.softcap << " prefill " << c.prefill
                                      << " chunk " << c.chunk);
    const KvGeometry geo{c.heads, c.kv_heads, c.hd};
    TurboKvOptions f16;
    f16.mode = TurboKvOptions::Mode::f16;
    KvLayerSpec spec = turbo_kv_layer_spec(geo, f16);
    spec.window = c.window;
    auto device = std::make_shared<DeviceAllocator>();
    KvBlockPool device_pool(B, 0, std::make_shared<cuda::DeviceKvBlockAllocator>(device)), host_pool(B);
    KvLayerBlocked layer(device_pool, spec), host(host_pool, spec);
    const int64_t total = c.prefill + c.chunk + c.decode;
    cuda::DeviceKvLayer dkv(layer, *device, (total + B - 1) / B);
    std::vector<float> all_k, all_v;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    const AttentionSpec attn{scale, c.softcap, c.window};
    auto step = [&](int64_t n, bool check) {
      const int64_t pos0 = layer.n_tokens(), kvd = c.kv_heads * c.hd;
      std::vector<float> k = randn(n * kvd), v = randn(n * kvd), q = randn(n * c.heads * c.hd, 2.0f);
      std::vector<int32_t> positions(n);
      for (int64_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
      dkv.grow(n, nullptr);
      DeviceBuffer dk = up(k), dv = up(v), dq = up(q), dp = up(positions);
      DeviceBuffer scratch(alloc_, kc::attention_scratch_bytes(n, c.heads, c.hd, kc::kMaxAttentionSplits), "test");
      dkv.write(dk.get<float>(), dv.get<float>(), n, dp.get<int32_t>(), nullptr);
      // n_kv_bound is the history here, so decode takes the split tiled kernel from tiled_decode_min_positions().
      const bool tensor_cores = n >= kc::kPrefillAttentionMinQueries || layer.n_tokens() >= kc::tiled_decode_min_positions();
      DeviceBuffer dout = out(q.size());
      dkv.attend(dq.get<float>(), n, dp.get<int32_t>(), layer.n_tokens(), attn, dout.get<float>(), scratch.get(),
                 nullptr);
      const std::vector<float> got = down<float>(dout, q.size());
      const char* kernel = tensor_cores ? "tiled prefill kernel" : "decode kernel";
      // Flash-decoding under a bound far above the history, as a decode graph captured for a longer context passes
      // it: splits sized for the bound, most past the history (they leave only an empty state for the merge).
      std::vector<float> got_bound;
      if (const int64_t bound = kc::tiled_decode_min_positions() - 1; !tensor_cores && bound > layer.n_tokens()) {
        DeviceBuffer dout_bound = out(q.size());
        dkv.attend(dq.get<float>(), n, dp.get<int32_t>(), bound, attn, dout_bound.get<float>(), scratch.get(), nullptr);
        got_bound = down<float>(dout_bound, q.size());
      }
      host.append(k.data(), v.data(), n);
      // The device blocks hold the CPU codec's records: every position still held, K and V of every head.
      const uint64_t rec = 2 * c.hd;
      std::vector<uint8_t> dev_block;
      int64_t loaded = -1;
      for (int64_t p = host.first_needed_position(layer.n_tokens()); p < layer.n_tokens(); ++p) {
        const auto& hb = host.blocks()[p / B];
        const auto& db = layer.blocks()[p / B];
        ASSERT_TRUE(hb && db) << "position " << p << " released";
        if (loaded != p / B) {
          dev_block.resize(db->bytes);
          cuda::check(cudaMemcpy(dev_block.data(), db->data, db->bytes, cudaMemcpyDeviceToHost), "test download");
          loaded = p / B;
        }
        for (int64_t h = 0; h < c.kv_heads; ++h)
          for (uint64_t off : {(h * B + p % B) * rec, (c.kv_heads * B + h * B + p % B) * rec})
            ASSERT_EQ(std::memcmp(dev_block.data() + off, hb->data + off, rec), 0) << "position " << p << " head " << h;
      }
      EXPECT_EQ(layer.bytes(), host.bytes()) << "the same blocks are held";
      for (auto& e : k) e = f16_to_f32(f32_to_f16(e));
      for (auto& e : v) e = f16_to_f32(f32_to_f16(e));
      all_k.insert(all_k.end(), k.begin(), k.end());
      all_v.insert(all_v.end(), v.begin(), v.end());
      if (!check) return;
      std::vector<float> want(q.size());
      kernels::AttentionArgs a{q.data(), all_k.data(), all_v.data(), want.data(), n, layer.n_tokens(), c.heads,
                               c.kv_heads, c.hd, pos0, 0, scale, c.softcap, c.window};
      kernels::ref::attention(a);
      EXPECT_TRUE(test::close(got, want,
                              tensor_cores ? test::tensor_core_f32_tolerance(layer.n_tokens())
                                           : test::tolerance(WeightType::f32, layer.n_tokens()),
                              kernel));
      if (!got_bound.empty()) {
        EXPECT_TRUE(test::close(got_bound, want, test::tolerance(WeightType::f32, layer.n_tokens()),
                                "decode kernel under the bound below the tiled decode's"));
      }
    };
    step(c.prefill, c.prefill <= 400);  // the reference is O(n^2): long prefixes are only appended
    step(c.chunk, true);
    for (int64_t i = 0; i < c.decode; ++i) step(1, true);
  }
}

// Host-side (runs without a GPU): the split scratch a caller sizes once for its largest chunk,
// attention_scratch_bytes(n), holds the partial states of every split count decode_split_count gives a call of
// m <= n queries, for the targets the decode kernels use (flash-decoding's SMs x 4, the split tiled decode's one
// wave of 1-4 blocks per SM) and any blocks per split. The earlier bound, n min(max_splits, ceil(target / n)),
// failed this at n = 16, m = 15: a device out-of-bounds write.
TEST(CudaAttentionScratch, SizedForAChunkHoldsEverySmallerCallsSplits) {
  const int64_t H = 12, D = 128;
  const int max_splits = kc::kMaxAttentionSplits;
  std::vector<int64_t> targets = {kc::attention_target_blocks()};
  for (int per_sm = 1; per_sm <= 4; ++per_sm) targets.push_back(int64_t{kc::multiprocessor_count()} * per_sm);
  uint64_t previous = 0;
  for (int64_t n = 1; n <= 600; ++n) {
    const uint64_t bytes = kc::attention_scratch_bytes(n, H, D, max_splits);
    ASSERT_GE(bytes, previous) << "smaller for " << n << " queries than for " << n - 1;
    previous = bytes;
  }
  for (int64_t n : {1, 2, 15, 16, 17, 33, 64, 132, 264, 512, 528, 600}) {
    const uint64_t have = kc::attention_scratch_bytes(n, H, D, max_splits);
    for (int64_t m = 1; m <= n; ++m)
      for (int64_t target : targets)
        for (int64_t blocks : {int64_t{1}, int64_t{2}, int64_t{4}, int64_t{8}, 2 * m}) {
          const int splits = kc::decode_split_count(target, blocks, int64_t{1} << 20, 128, max_splits, m, H, D);
          const uint64_t need = static_cast<uint64_t>(m * H) * splits * (D + 2) * sizeof(float);
          ASSERT_LE(need, have) << "scratch for " << n << " queries, a call of " << m << " with target " << target
                                << " and " << blocks << " blocks per split: " << splits << " splits";
        }
  }
}

}  // namespace
}  // namespace lmlab

#else

TEST(CudaKernels, SkippedWithoutNvcc) { GTEST_SKIP() << "CUDA kernels not tested: this build has no CUDA backend"; }

#endif
