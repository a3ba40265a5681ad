// What the GPU micro-benchmarks share: the skip without a GPU, device buffers of harmless values, and timing a CUDA
// graph of back-to-back launches (as a captured decode step runs them) per launch.
#pragma once

#ifdef LMLAB_HAVE_CUDA

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_allocator.h"
#include "model/backend_factory.h"

namespace lmlab::bench {

inline bool skip_without_gpu(benchmark::State& state) {
  const std::string why = lmlab::device_unavailable_reason(lmlab::Device::cuda);
  if (why.empty()) return false;
  state.SkipWithError(("no GPU: " + why).c_str());
  return true;
}

// bf16 bit patterns in [-1, 1) (read as codes or scales: arbitrary, never NaN).
inline void fill_device(lmlab::cuda::DeviceBuffer& b, uint64_t bytes, unsigned seed) {
  std::vector<uint16_t> h(bytes / 2 + 1);
  uint32_t s = seed;
  for (auto& v : h) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<uint16_t>(0x3C00u | ((s >> 16) & 0x7Fu) | ((s >> 8) & 0x8000u));
  }
  lmlab::cuda::check(cudaMemcpy(b.get(), h.data(), bytes, cudaMemcpyHostToDevice), "bench upload");
}

// f32 values uniform in [-1, 1).
inline void fill_device_floats(lmlab::cuda::DeviceBuffer& b, int64_t count, unsigned seed) {
  std::vector<float> h(static_cast<size_t>(count));
  uint32_t s = seed;
  for (auto& v : h) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(s >> 8) / 8388608.0f - 1.0f;
  }
  lmlab::cuda::check(cudaMemcpy(b.get(), h.data(), h.size() * 4, cudaMemcpyHostToDevice), "bench upload");
}

// Captures `launches` calls of enqueue(stream) into a graph and sets each iteration's time to one call's.
template <class Enqueue>
void time_graph(benchmark::State& state, int launches, Enqueue enqueue) {
  cudaStream_t stream;
  lmlab::cuda::check(cudaStreamCreate(&stream), "stream");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  lmlab::cuda::check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
  for (int i = 0; i < launches; ++i) enqueue(stream);
  lmlab::cuda::check(cudaStreamEndCapture(stream, &graph), "capture");
  lmlab::cuda::check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  lmlab::cuda::check(cudaGraphLaunch(exec, stream), "warm up");
  for (auto _ : state) {
    cudaEventRecord(e0, stream);
    cudaGraphLaunch(exec, stream);
    cudaEventRecord(e1, stream);
    lmlab::cuda::check(cudaEventSynchronize(e1), "bench");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    state.SetIterationTime(ms / 1e3 / launches);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec), cudaGraphDestroy(graph), cudaStreamDestroy(stream);
}

}  // namespace lmlab::bench

#endif  // LMLAB_HAVE_CUDA
