// GPU decode GEMV beside the device's read bandwidth, at the shapes of the models the CUDA targets name
// (qwen3-8b, qwen3-30b-a3b): bf16 and MLX affine 4/8-bit (group 64, bf16 scales). Each iteration replays a CUDA
// graph of kLaunches back-to-back GEMVs (as the captured decode step runs them); bytes/s = weight bytes read
// (packed values, scales and biases) per second, the time column one GEMV. Compare with the device's read
// bandwidth (H200: 4.37 TB/s measured, issue 16). Also the gate / up pair and the fused norm and residual add
// against the launches they replace. Without a GPU every benchmark reports the reason.
#include <benchmark/benchmark.h>

#ifdef LMLAB_HAVE_CUDA

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda_bench_util.h"

namespace {

using lmlab::cuda::DeviceAllocator;
using lmlab::cuda::DeviceBuffer;
namespace kc = lmlab::kernels::cuda;
using lmlab::bench::fill_device;
using lmlab::bench::skip_without_gpu;

constexpr int kLaunches = 20;

struct Shape {
  const char* name;
  int64_t rows, cols, slots;  // slots > 0: gathered over that many experts of 128
};
const Shape kShapes[] = {
    {"8b_qkv", 6144, 4096, 0},      {"8b_q", 4096, 4096, 0},      {"8b_kv", 1024, 4096, 0},
    {"8b_gateup", 24576, 4096, 0},  {"8b_down", 4096, 12288, 0},  {"8b_lm_head", 151936, 4096, 0},
    {"30b_q", 4096, 2048, 0},       {"30b_kv", 512, 2048, 0},     {"30b_o", 2048, 4096, 0},
    {"30b_router", 128, 2048, 0},   {"30b_exp_gate", 768, 2048, 8}, {"30b_exp_down", 2048, 768, 8},
};

// A weight of rows x cols (E experts stacked when E > 1): bf16 (bits 0) or MLX affine (group 64, bf16 scales).
struct BenchWeight {
  DeviceBuffer bw, bs, bb;
  kc::DeviceWeight w;
  uint64_t read_bytes = 0;  // one expert's packed values, scales and biases
};
BenchWeight make_weight(DeviceAllocator& alloc, int64_t rows, int64_t cols, int bits, int64_t E) {
  BenchWeight b;
  kc::DeviceWeight& w = b.w;
  w.rows = rows, w.cols = cols;
  uint64_t wbytes = 0, sbytes = 0;
  if (bits == 0) {
    wbytes = static_cast<uint64_t>(w.rows * w.cols) * 2;
    b.bw = DeviceBuffer(alloc, wbytes * E, "bench");
    fill_device(b.bw, wbytes * E, 1);
    w.type = lmlab::kernels::WeightType::bf16, w.dense = b.bw.get();
  } else {
    constexpr int kGroup = 64;
    wbytes = static_cast<uint64_t>(w.rows * w.cols) * bits / 8;
    sbytes = static_cast<uint64_t>(w.rows * (w.cols / kGroup)) * 2;
    b.bw = DeviceBuffer(alloc, wbytes * E, "bench"), b.bs = DeviceBuffer(alloc, sbytes * E, "bench");
    b.bb = DeviceBuffer(alloc, sbytes * E, "bench");
    fill_device(b.bw, wbytes * E, 1), fill_device(b.bs, sbytes * E, 2), fill_device(b.bb, sbytes * E, 3);
    w.affine = true;
    w.quant = {b.bw.get<uint32_t>(), b.bs.get(), b.bb.get(), lmlab::kernels::ScaleType::bf16, bits, kGroup, w.rows,
               w.cols};
    w.stride_s = sbytes;
  }
  w.stride_w = wbytes;
  b.read_bytes = wbytes + 2 * sbytes;
  return b;
}

// The slots' expert ids (spread over the E experts) on the device.
DeviceBuffer expert_ids(DeviceAllocator& alloc, int64_t slots, int64_t E) {
  DeviceBuffer experts(alloc, 64 * 4, "bench experts");
  std::vector<int32_t> ids;
  for (int64_t s = 0; s < slots; ++s) ids.push_back(static_cast<int32_t>((s * 37) % E));
  lmlab::cuda::check(cudaMemcpy(experts.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice), "bench upload");
  return experts;
}

void BM_cuda_gemv(benchmark::State& state, Shape shape, int bits, int tokens) {
  if (skip_without_gpu(state)) return;
  DeviceAllocator alloc;
  const int64_t E = shape.slots ? 128 : 1, slots = shape.slots ? shape.slots : 1;
  const BenchWeight bw = make_weight(alloc, shape.rows, shape.cols, bits, E);
  const kc::DeviceWeight& w = bw.w;
  const int64_t n = shape.slots ? 1 : tokens;
  DeviceBuffer x(alloc, static_cast<uint64_t>(slots * n * w.cols) * 4, "bench x");
  DeviceBuffer y(alloc, static_cast<uint64_t>(slots * n * w.rows) * 4, "bench y");
  const DeviceBuffer experts = expert_ids(alloc, slots, E);
  fill_device(x, static_cast<uint64_t>(slots * n * w.cols) * 4, 4);
  DeviceBuffer scratch(alloc, kc::matmul_scratch_bytes(w.rows, w.cols, n, w.affine), "bench scratch");
  lmlab::bench::time_graph(state, kLaunches, [&](cudaStream_t stream) {
    const kc::GemvPart part{w, y.get<float>()};
    if (shape.slots) kc::matmul_gathered(&part, 1, experts.get<int32_t>(), x.get<float>(), 1, slots, stream);
    else kc::matmul(w, x.get<float>(), y.get<float>(), n, scratch.get(), stream);
  });
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bw.read_bytes * slots));
}

// A gated MLP's gate and up projections with the activation, one token (slots > 0: gathered experts): `pair` in one
// launch (matmul_gate_up with DecodeOptions::gate_up_pair), else the two-part GEMV and gated_mul.
void BM_cuda_gate_up(benchmark::State& state, Shape shape, int bits, bool pair) {
  if (skip_without_gpu(state)) return;
  DeviceAllocator alloc;
  const int64_t E = shape.slots ? 128 : 1, slots = shape.slots ? shape.slots : 1;
  const BenchWeight gate = make_weight(alloc, shape.rows, shape.cols, bits, E);
  const BenchWeight up = make_weight(alloc, shape.rows, shape.cols, bits, E);
  const uint64_t out_bytes = static_cast<uint64_t>(slots * shape.rows) * 4;
  DeviceBuffer x(alloc, static_cast<uint64_t>(shape.cols) * 4, "bench x"), g(alloc, out_bytes, "bench g");
  DeviceBuffer u(alloc, out_bytes, "bench u"), out(alloc, out_bytes, "bench out");
  const DeviceBuffer experts = expert_ids(alloc, slots, E);
  fill_device(x, static_cast<uint64_t>(shape.cols) * 4, 4);
  const auto act = kc::GateActivation::silu;
  const kc::DecodeOptions was = kc::decode_options();
  kc::DecodeOptions chosen = was;
  chosen.gate_up_pair = pair;
  kc::set_decode_options(chosen);
  lmlab::bench::time_graph(state, kLaunches, [&](cudaStream_t stream) {
    if (pair && shape.slots) {
      kc::matmul_gathered_gate_up(gate.w, up.w, act, experts.get<int32_t>(), x.get<float>(), slots, slots, g.get<float>(),
                                  u.get<float>(), out.get<float>(), stream);
    } else if (pair) {
      kc::matmul_gate_up(gate.w, up.w, act, x.get<float>(), g.get<float>(), u.get<float>(), out.get<float>(), 1, nullptr,
                         stream);
    } else {
      const kc::GemvPart parts[] = {{gate.w, g.get<float>()}, {up.w, u.get<float>()}};
      if (shape.slots) kc::matmul_gathered(parts, 2, experts.get<int32_t>(), x.get<float>(), slots, slots, stream);
      else kc::matmul_parts(parts, 2, x.get<float>(), 1, nullptr, stream);
      kc::gated_mul(act, g.get<float>(), u.get<float>(), out.get<float>(), slots * shape.rows, stream);
    }
  });
  kc::set_decode_options(was);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 2 * gate.read_bytes * slots));
}

// The attention output's projection, the residual add, the MLP norm and the gate / up GEMV of a dense layer, one
// token, 4-bit: `fused` as decode runs them with kc::GemvFusion (the o GEMV adds into the residual, the gate / up
// GEMV norms it as it fills x: two launches), else o, add_rmsnorm and the gate / up GEMV (three).
void BM_cuda_fused_norm(benchmark::State& state, Shape o_shape, int64_t inter, bool fused) {
  if (skip_without_gpu(state)) return;
  DeviceAllocator alloc;
  const int64_t H = o_shape.rows;
  const BenchWeight o = make_weight(alloc, H, o_shape.cols, 4, 1);
  const BenchWeight gate = make_weight(alloc, inter, H, 4, 1), up = make_weight(alloc, inter, H, 4, 1);
  DeviceBuffer attn(alloc, static_cast<uint64_t>(o_shape.cols) * 4, "bench attn");
  DeviceBuffer x(alloc, static_cast<uint64_t>(H) * 4, "bench x"), y(alloc, static_cast<uint64_t>(H) * 4, "bench y");
  DeviceBuffer h(alloc, static_cast<uint64_t>(H) * 4, "bench h"), norm_w(alloc, static_cast<uint64_t>(H) * 4, "bench w");
  DeviceBuffer g(alloc, static_cast<uint64_t>(inter) * 4, "bench g"), u(alloc, static_cast<uint64_t>(inter) * 4, "bench u");
  fill_device(attn, static_cast<uint64_t>(o_shape.cols) * 4, 4), fill_device(x, static_cast<uint64_t>(H) * 4, 5);
  fill_device(norm_w, static_cast<uint64_t>(H) * 4, 6);
  const auto act = kc::GateActivation::silu;
  const float eps = 1e-6f;
  lmlab::bench::time_graph(state, kLaunches, [&](cudaStream_t stream) {
    if (fused) {
      kc::matmul(o.w, attn.get<float>(), x.get<float>(), 1, nullptr, stream, {.norm = {}, .accumulate = true});
      kc::matmul_gate_up(gate.w, up.w, act, x.get<float>(), g.get<float>(), u.get<float>(), g.get<float>(), 1, nullptr,
                         stream, {norm_w.get<float>(), eps});
    } else {
      kc::matmul(o.w, attn.get<float>(), y.get<float>(), 1, nullptr, stream);
      kc::add_rmsnorm(x.get<float>(), y.get<float>(), norm_w.get<float>(), h.get<float>(), 1, H, eps, stream);
      kc::matmul_gate_up(gate.w, up.w, act, h.get<float>(), g.get<float>(), u.get<float>(), g.get<float>(), 1, nullptr,
                         stream);
    }
  });
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (o.read_bytes + 2 * gate.read_bytes)));
}

}  // namespace

namespace {
const bool kRegistered = [] {
  for (const Shape& s : kShapes)
    for (int bits : {0, 4, 8})
      for (int tokens : {1, 4}) {
        if (s.slots && tokens > 1) continue;
        const std::string name = std::string("BM_cuda_gemv/") + s.name + "/" + (bits ? "q" + std::to_string(bits) : "bf16") +
                                 "/n" + std::to_string(tokens);
        benchmark::RegisterBenchmark(name.c_str(), BM_cuda_gemv, s, bits, tokens)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
      }
  // The gate / up pair against two parts + gated_mul: the 8B's 12288 x 4096 (bf16 and 4-bit) and the 30b-a3b's
  // experts (768 x 2048, 8 slots, 4-bit).
  const Shape pairs[] = {{"8b", 12288, 4096, 0}, {"30b_exp", 768, 2048, 8}};
  for (const Shape& s : pairs)
    for (int bits : {0, 4})
      for (bool pair : {false, true}) {
        if (s.slots && bits == 0) continue;
        const std::string name = std::string("BM_cuda_gate_up/") + s.name + "/" + (bits ? "q4" : "bf16") + "/" +
                                 (pair ? "pair" : "two_and_gated_mul");
        benchmark::RegisterBenchmark(name.c_str(), BM_cuda_gate_up, s, bits, pair)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
      }
  // The fused norm and residual add against the separate kernels, at the 8B's shapes.
  for (bool fused : {false, true}) {
    const std::string name = std::string("BM_cuda_fused_norm/8b/q4/") + (fused ? "fused" : "o_add_rmsnorm_gate_up");
    benchmark::RegisterBenchmark(name.c_str(), BM_cuda_fused_norm, Shape{"8b_o", 4096, 4096, 0}, int64_t{12288}, fused)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  return true;
}();
}  // namespace

#endif  // LMLAB_HAVE_CUDA
