// GPU attention alone, at the shapes of the models the CUDA targets name, over a history written by the engine's own
// KV write kernels (f16 rows, or TurboQuant K5/V4 records encoded on the device): decode (one query: the KV bytes it
// reads per second, against the device's read bandwidth, H200 4.37 TB/s), a decode step's attention side (`step`:
// the new token's K / V written first, the TurboQuant attention started beside its encode as the engine's decode
// does) and a 512-query prefill chunk at the end of the history (TFLOP/s of its QK^T and PV). What issue 11's
// TurboQuant-vs-f16 decode ratio and issue 16's prefill come down to, without the rest of a step. The kernel choice
// follows the engine's (kernels_cuda.h): e.g. LMLAB_TILED_DECODE_MIN_POSITIONS=4096 puts decode on the split tiled
// kernel from 4K positions, to compare.
// Each iteration replays a graph of kLaunches calls; the bound passed is the decode graph's (the next power of two
// above the position, at least 4096, at most a context just above the history). Without a GPU every benchmark
// reports the reason.
#include <benchmark/benchmark.h>

#ifdef LMLAB_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/device_tq_codec.h"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda_bench_util.h"
#include "kv/turboquant/tq_layer_spec.h"

namespace {

using lmlab::cuda::DeviceAllocator;
using lmlab::cuda::DeviceBuffer;
namespace kc = lmlab::kernels::cuda;

constexpr int kLaunches = 10;
constexpr int64_t kBlockTokens = 32;  // the engine's default --kv-block-tokens
constexpr int64_t kHeadDim = 128;

struct Shape {
  const char* name;
  int64_t heads, kv_heads;
};
const Shape kShapes[] = {{"8b", 32, 8}, {"30b", 32, 4}};

// The decode graph's attention bound at `pos` (cuda_backend.cpp's decode_kv_bound) for a context just above the
// history (the next multiple of 512).
int64_t decode_bound(int64_t pos) {
  const int64_t context = (pos + 1 + 511) / 512 * 512;
  int64_t b = 4096;
  while (b <= pos && b < context) b *= 2;
  return std::min(b, context);
}

// One layer's history of n positions in device blocks, written in chunks through kv_write / tq_kv_write.
struct History {
  DeviceBuffer memory, table, positions, k, v;
  std::unique_ptr<lmlab::cuda::DeviceTqCodec> codec;
  kc::KvBlocks f16{};
  kc::TqKvBlocks tq{};
  bool turbo = false;
  uint64_t bytes_per_position = 0;  // all KV heads, K and V
};

void build_history(History& h, DeviceAllocator& alloc, const Shape& s, bool turbo, int64_t n) {
  const lmlab::KvGeometry geo{s.heads, s.kv_heads, kHeadDim};
  h.turbo = turbo;
  uint64_t block_bytes = 0;
  if (turbo) {
    h.codec = lmlab::cuda::DeviceTqCodec::make(alloc, lmlab::turbo_kv_layer_spec(geo, {}));
    const kc::TqKvBlocks probe = h.codec->blocks(nullptr, kBlockTokens, s.kv_heads, kHeadDim);
    h.bytes_per_position = static_cast<uint64_t>(s.kv_heads * (probe.k.record_bytes + probe.v.record_bytes));
  } else {
    h.bytes_per_position = static_cast<uint64_t>(s.kv_heads * kHeadDim * 2 * 2);
  }
  block_bytes = (h.bytes_per_position * kBlockTokens + 255) / 256 * 256;
  const int64_t n_blocks = (n + kBlockTokens - 1) / kBlockTokens;
  h.memory = DeviceBuffer(alloc, block_bytes * n_blocks, "bench kv");
  std::vector<uint8_t*> ptrs(static_cast<size_t>(n_blocks));
  for (int64_t b = 0; b < n_blocks; ++b) ptrs[b] = h.memory.get<uint8_t>() + b * block_bytes;
  h.table = DeviceBuffer(alloc, ptrs.size() * sizeof(void*), "bench kv table");
  lmlab::cuda::check(cudaMemcpy(h.table.get(), ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice),
                     "bench upload");
  if (turbo) h.tq = h.codec->blocks(h.table.get<uint8_t*>(), kBlockTokens, s.kv_heads, kHeadDim);
  else h.f16 = {h.table.get<uint16_t*>(), kBlockTokens, s.kv_heads, kHeadDim};
  constexpr int64_t kChunk = 4096;
  const int64_t row = s.kv_heads * kHeadDim;
  h.k = DeviceBuffer(alloc, kChunk * row * 4, "bench k"), h.v = DeviceBuffer(alloc, kChunk * row * 4, "bench v");
  lmlab::bench::fill_device_floats(h.k, kChunk * row, 11), lmlab::bench::fill_device_floats(h.v, kChunk * row, 12);
  h.positions = DeviceBuffer(alloc, kChunk * 4, "bench positions");
  std::vector<int32_t> pos(kChunk);
  for (int64_t p0 = 0; p0 < n; p0 += kChunk) {
    const int64_t m = std::min(kChunk, n - p0);
    for (int64_t i = 0; i < m; ++i) pos[i] = static_cast<int32_t>(p0 + i);
    lmlab::cuda::check(cudaMemcpy(h.positions.get(), pos.data(), m * 4, cudaMemcpyHostToDevice), "bench upload");
    if (turbo) kc::tq_kv_write(h.tq, h.k.get<float>(), h.v.get<float>(), m, h.positions.get<int32_t>(), nullptr);
    else kc::kv_write(h.f16, h.k.get<float>(), h.v.get<float>(), m, h.positions.get<int32_t>(), nullptr);
  }
  lmlab::cuda::check(cudaDeviceSynchronize(), "bench kv write");
}

// n_q queries at the last n_q positions of a history of `n` positions. with_write: each launch first writes the
// queries' own K and V (kv_write / tq_kv_write, as a decode step does before its attention), and the TurboQuant
// attention starts beside that encode (the decode's early start): the step's attention side as the engine runs it.
void BM_cuda_attention(benchmark::State& state, Shape s, bool turbo, int64_t n_q, int64_t n, bool with_write) {
  if (lmlab::bench::skip_without_gpu(state)) return;
  DeviceAllocator alloc;
  History h;
  build_history(h, alloc, s, turbo, n);
  DeviceBuffer q(alloc, n_q * s.heads * kHeadDim * 4, "bench q"), out(alloc, n_q * s.heads * kHeadDim * 4, "bench out");
  lmlab::bench::fill_device_floats(q, n_q * s.heads * kHeadDim, 13);
  DeviceBuffer positions(alloc, n_q * 4, "bench query positions");
  std::vector<int32_t> pos(static_cast<size_t>(n_q));
  for (int64_t i = 0; i < n_q; ++i) pos[i] = static_cast<int32_t>(n - n_q + i);
  lmlab::cuda::check(cudaMemcpy(positions.get(), pos.data(), n_q * 4, cudaMemcpyHostToDevice), "bench upload");
  DeviceBuffer scratch(alloc, kc::attention_scratch_bytes(n_q, s.heads, kHeadDim, kc::kMaxAttentionSplits), "bench scratch");
  const int64_t bound = n_q == 1 ? decode_bound(n - 1) : n;  // as cuda_backend.cpp passes it
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  lmlab::bench::time_graph(state, kLaunches, [&](cudaStream_t stream) {
    if (with_write) {
      if (turbo) kc::tq_kv_write(h.tq, h.k.get<float>(), h.v.get<float>(), n_q, positions.get<int32_t>(), stream);
      else kc::kv_write(h.f16, h.k.get<float>(), h.v.get<float>(), n_q, positions.get<int32_t>(), stream);
    }
    if (turbo)
      kc::tq_attention(h.tq, q.get<float>(), out.get<float>(), n_q, s.heads, positions.get<int32_t>(), bound, scale, 0.0f,
                       0, kc::kMaxAttentionSplits, scratch.get(), stream, with_write);
    else
      kc::attention(h.f16, q.get<float>(), out.get<float>(), n_q, s.heads, positions.get<int32_t>(), bound, scale, 0.0f, 0,
                    kc::kMaxAttentionSplits, scratch.get(), stream);
  });
  // Decode: the history's bytes (every position once). Prefill: QK^T and PV over each query's causal history.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * h.bytes_per_position * n));
  const double flops = 4.0 * kHeadDim * s.heads * (static_cast<double>(n) * n_q - n_q * (n_q - 1) / 2.0);
  state.counters["TFLOPs"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["KV_MB"] = static_cast<double>(h.bytes_per_position * n) / 1e6;
}

const bool kRegistered = [] {
  for (const Shape& s : kShapes)
    for (bool turbo : {false, true}) {
      for (int64_t n : {512, 1024, 4096, 16384, 40000, 100000}) {
        const std::string name = std::string("BM_cuda_attention/") + s.name + "/" + (turbo ? "turbo" : "f16") +
                                 "/decode/" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), BM_cuda_attention, s, turbo, 1, n, false)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
      }
      // The decode step's attention side: the new token's K / V write, then the attention.
      for (int64_t n : {512, 40000, 100000}) {
        const std::string name = std::string("BM_cuda_attention/") + s.name + "/" + (turbo ? "turbo" : "f16") +
                                 "/step/" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), BM_cuda_attention, s, turbo, 1, n, true)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
      }
      for (int64_t n : {4096, 40000, 100000}) {
        const std::string name = std::string("BM_cuda_attention/") + s.name + "/" + (turbo ? "turbo" : "f16") +
                                 "/prefill512/" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), BM_cuda_attention, s, turbo, 512, n, false)->UseManualTime()->Unit(
            benchmark::kMillisecond);
      }
    }
  return true;
}();

}  // namespace

#endif  // LMLAB_HAVE_CUDA
