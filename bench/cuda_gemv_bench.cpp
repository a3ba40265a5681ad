// GPU decode GEMV beside the device's read bandwidth, at the shapes of the models the CUDA targets name
// (qwen3-8b, qwen3-30b-a3b): bf16 and MLX affine 4/8-bit (group 64, bf16 scales). Each iteration replays a CUDA
// graph of kLaunches back-to-back GEMVs (as the captured decode step runs them); bytes/s = weight bytes read
// (packed values, scales and biases) per second, the time column one GEMV. Compare with the device's read
// bandwidth (H200: 4.37 TB/s measured, issue 16). Without a GPU every benchmark reports the reason.
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

// bits 0: bf16 dense.
void BM_cuda_gemv(benchmark::State& state, Shape shape, int bits, int tokens) {
  if (skip_without_gpu(state)) return;
  DeviceAllocator alloc;
  const int64_t E = shape.slots ? 128 : 1, slots = shape.slots ? shape.slots : 1;
  kc::DeviceWeight w;
  w.rows = shape.rows, w.cols = shape.cols;
  uint64_t wbytes = 0, sbytes = 0;
  DeviceBuffer bw, bs, bb;
  if (bits == 0) {
    wbytes = static_cast<uint64_t>(w.rows * w.cols) * 2;
    bw = DeviceBuffer(alloc, wbytes * E, "bench");
    fill_device(bw, wbytes * E, 1);
    w.type = lmlab::kernels::WeightType::bf16, w.dense = bw.get();
  } else {
    constexpr int kGroup = 64;
    wbytes = static_cast<uint64_t>(w.rows * w.cols) * bits / 8;
    sbytes = static_cast<uint64_t>(w.rows * (w.cols / kGroup)) * 2;
    bw = DeviceBuffer(alloc, wbytes * E, "bench"), bs = DeviceBuffer(alloc, sbytes * E, "bench");
    bb = DeviceBuffer(alloc, sbytes * E, "bench");
    fill_device(bw, wbytes * E, 1), fill_device(bs, sbytes * E, 2), fill_device(bb, sbytes * E, 3);
    w.affine = true;
    w.quant = {bw.get<uint32_t>(), bs.get(), bb.get(), lmlab::kernels::ScaleType::bf16, bits, kGroup, w.rows, w.cols};
    w.stride_s = sbytes;
  }
  w.stride_w = wbytes;
  const int64_t n = shape.slots ? 1 : tokens;
  DeviceBuffer x(alloc, static_cast<uint64_t>(slots * n * w.cols) * 4, "bench x");
  DeviceBuffer y(alloc, static_cast<uint64_t>(slots * n * w.rows) * 4, "bench y");
  DeviceBuffer experts(alloc, 64 * 4, "bench experts");
  fill_device(x, static_cast<uint64_t>(slots * n * w.cols) * 4, 4);
  std::vector<int32_t> ids;
  for (int64_t s = 0; s < slots; ++s) ids.push_back(static_cast<int32_t>((s * 37) % E));
  lmlab::cuda::check(cudaMemcpy(experts.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice), "bench upload");
  DeviceBuffer scratch(alloc, kc::matmul_scratch_bytes(w.rows, w.cols, n, w.affine), "bench scratch");
  lmlab::bench::time_graph(state, kLaunches, [&](cudaStream_t stream) {
    const kc::GemvPart part{w, y.get<float>()};
    if (shape.slots) kc::matmul_gathered(&part, 1, experts.get<int32_t>(), x.get<float>(), 1, slots, stream);
    else kc::matmul(w, x.get<float>(), y.get<float>(), n, scratch.get(), stream);
  });
  const uint64_t read = (wbytes + 2 * sbytes) * slots;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * read));
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
  return true;
}();
}  // namespace

#endif  // LMLAB_HAVE_CUDA
