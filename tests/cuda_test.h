// The fixture base of the CUDA suites: skips (with the reason) without a GPU, and moves test data to and from
// the device through a counted DeviceAllocator.
#pragma once

#include <gtest/gtest.h>

#ifdef LMLAB_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"
#include "model/backend_factory.h"

namespace lmlab::test {

class CudaTest : public ::testing::Test {
 protected:
  // `what` names the suite in the skip message; `seed` fixes randn's data.
  CudaTest(const char* what, uint32_t seed) : what_(what), rng_(seed) {}

  void SetUp() override {
    if (const std::string why = device_unavailable_reason(Device::cuda); !why.empty())
      GTEST_SKIP() << what_ << " not tested: " << why;
  }

  template <typename T>
  cuda::DeviceBuffer up(const std::vector<T>& v) {
    cuda::DeviceBuffer b(alloc_, std::max<size_t>(1, v.size()) * sizeof(T), "test");
    cuda::check(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "test upload");
    return b;
  }
  template <typename T>
  std::vector<T> down(const cuda::DeviceBuffer& b, size_t n) {
    cuda::check(cudaDeviceSynchronize(), "test sync");
    std::vector<T> v(n);
    cuda::check(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost), "test download");
    return v;
  }
  // Poisoned output: an element the kernel forgot to write fails the comparison.
  cuda::DeviceBuffer out(size_t n) { return up(std::vector<float>(n, std::nanf(""))); }
  std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }

  const char* what_;
  cuda::DeviceAllocator alloc_;
  std::mt19937 rng_;
};

// The decode kernels chosen for a scope (kernels_cuda.h DecodeOptions), the process's choice restored after however
// the scope ends.
struct ScopedDecodeOptions {
  explicit ScopedDecodeOptions(const kernels::cuda::DecodeOptions& o) : was(kernels::cuda::decode_options()) {
    kernels::cuda::set_decode_options(o);
  }
  ~ScopedDecodeOptions() { kernels::cuda::set_decode_options(was); }
  kernels::cuda::DecodeOptions was;
};

}  // namespace lmlab::test

#endif  // LMLAB_HAVE_CUDA
