// The GPU side of the routing mailbox (kernels_cuda.h, cuda/routing_mailbox.h): a decode graph with streamed experts
// publishes each MoE layer's routed ids to mapped host memory and spins until the host has named their VRAM slots,
// so the whole step stays one graph launch instead of a host round trip and ~15 launches per MoE layer.
// Memory order, system scope: the ids are fenced before the count that publishes them (release), and the host's
// slots are read only after its answer is seen (acquire); the host side pairs them with std::atomic_ref.
#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

__device__ __forceinline__ uint32_t load_acquire_system(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void store_release_system(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__global__ void publish_kernel(RoutingMailboxView m, const int32_t* ids, const int32_t* predicted, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    m.ids[i] = ids[i];
    if (predicted) m.predicted[i] = predicted[i];
  }
  __threadfence_system();  // every lane's ids reach the host before the count below
  __syncthreads();
  if (threadIdx.x == 0) {
    const uint32_t c = *m.device_count + 1;
    *m.device_count = c;
    store_release_system(m.ready, c);
  }
}

__global__ void await_kernel(RoutingMailboxView m, int32_t* slot_ids, int n) {
  const uint32_t c = *m.device_count;  // written by the publish_kernel before this one
  // Each lane acquires the answer itself, so its reads of the slots below are ordered after it. Counts wrap:
  // compare by difference (the host may answer ahead of us when it releases a failed step's remaining layers).
  while (static_cast<int32_t>(load_acquire_system(m.go) - c) < 0) __nanosleep(256);
  const volatile int32_t* slots = m.slots;
  for (int i = threadIdx.x; i < n; i += blockDim.x) slot_ids[i] = slots[i];
}

}  // namespace

void load_routing_handshake() {
  cudaFuncAttributes a{};
  lmlab::cuda::check(cudaFuncGetAttributes(&a, publish_kernel), "publish_routing");
  lmlab::cuda::check(cudaFuncGetAttributes(&a, await_kernel), "await_slots");
}

void publish_routing(const RoutingMailboxView& m, const int32_t* ids, const int32_t* predicted, int64_t n,
                     cudaStream_t stream) {
  if (n <= 0 || n > m.capacity)
    throw Error(ErrorKind::internal, "publish_routing", "more routed ids than the routing mailbox holds");
  publish_kernel<<<1, 32, 0, stream>>>(m, ids, predicted, static_cast<int>(n));
  lmlab::cuda::check(cudaGetLastError(), "publish_routing");
}

void await_slots(const RoutingMailboxView& m, int32_t* slot_ids, int64_t n, cudaStream_t stream) {
  if (n <= 0 || n > m.capacity)
    throw Error(ErrorKind::internal, "await_slots", "more slots than the routing mailbox holds");
  await_kernel<<<1, 32, 0, stream>>>(m, slot_ids, static_cast<int>(n));
  lmlab::cuda::check(cudaGetLastError(), "await_slots");
}

}  // namespace lmlab::kernels::cuda
