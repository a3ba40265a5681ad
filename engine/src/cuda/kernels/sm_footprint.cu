// SM footprints from the kernels' attributes and the device's limits (sm_footprint.cuh).
#include "cuda/kernels/sm_footprint.cuh"

#include <algorithm>

namespace lmlab::kernels::cuda {

namespace {
constexpr int kRegisterUnit = 256;  // registers are handed out per warp in units of 256 (sm_50 on)
}  // namespace

const SmLimits& sm_limits() {
  static const SmLimits limits = [] {
    SmLimits l;
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
      (void)cudaGetLastError();
      return l;
    }
    auto attr = [&](cudaDeviceAttr a, int& v) {
      int x = 0;
      if (cudaDeviceGetAttribute(&x, a, device) == cudaSuccess && x > 0) v = x;
      else (void)cudaGetLastError();
    };
    attr(cudaDevAttrMaxRegistersPerMultiprocessor, l.registers);
    attr(cudaDevAttrMaxSharedMemoryPerMultiprocessor, l.shared);
    attr(cudaDevAttrMaxThreadsPerMultiProcessor, l.threads);
    attr(cudaDevAttrMaxBlocksPerMultiprocessor, l.blocks);
    attr(cudaDevAttrReservedSharedMemoryPerBlock, l.reserved_shared);
    return l;
  }();
  return limits;
}

cudaFuncAttributes attributes_of(const void* kernel) {
  cudaFuncAttributes fa{};
  if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaFuncAttributes{};
  }
  return fa;
}

SmFootprint footprint_of(const cudaFuncAttributes& fa, int threads, size_t dynamic_shared) {
  if (fa.numRegs == 0) return {};
  const int warps = (threads + 31) / 32;
  const int per_warp = (fa.numRegs * 32 + kRegisterUnit - 1) / kRegisterUnit * kRegisterUnit;
  return {warps * per_warp, static_cast<int>(fa.sharedSizeBytes + dynamic_shared) + sm_limits().reserved_shared,
          threads};
}

int blocks_beside(const SmFootprint& resident, const SmFootprint& block, const SmLimits& l) {
  const bool other = resident.threads > 0;
  int n = l.blocks - (other ? 1 : 0);
  auto fit = [&](int limit, int used, int each) {
    if (each > 0) n = std::min(n, std::max(0, limit - used) / each);
  };
  fit(l.registers, resident.registers, block.registers);
  fit(l.shared, resident.shared, block.shared);
  fit(l.threads, resident.threads, block.threads);
  return std::max(0, n);
}

}  // namespace lmlab::kernels::cuda
