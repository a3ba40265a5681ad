// Whether chained launches are on (chained_launch.cuh): the device is sm_90+ and LMLAB_CUDA_CHAINED is not 0, or
// what set_chained_launches said last.
#include <atomic>
#include <cstdlib>
#include <string_view>

#include "cuda/kernels/chained_launch.cuh"

namespace lmlab::kernels::cuda {

namespace {

bool device_has_chaining() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 9;
}

std::atomic<bool>& chained_choice() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("LMLAB_CUDA_CHAINED");
    return !(env && std::string_view(env) == "0") && device_has_chaining();
  }()};
  return on;
}

}  // namespace

bool chained_launches() { return chained_choice().load(std::memory_order_relaxed); }
void set_chained_launches(bool on) { chained_choice().store(on && device_has_chaining(), std::memory_order_relaxed); }

}  // namespace lmlab::kernels::cuda
