// RoutingMailbox: the host side of a decode graph's hand-off with streamed experts (kernels/host_handshake.cu).
// Pinned, mapped host memory holds the GPU's `ready` count, the routed and predicted ids it publishes per MoE layer,
// the host's answer count `go` and the slots it names; a device word counts the publications. The host thread that
// launched the graph serves the layers in order:
//
//   mailbox.wait_published(++served, stream);  // spins until the GPU has published layer number `served`
//   ... ids() / predicted() -> the VRAM cache loads the misses (copies on another stream, waited for) ...
//   mailbox.answer(slots, served);             // the GPU's await kernel copies the slots and goes on
//
// After an error the host must still let the graph finish: release(count) answers every layer up to `count` (the
// slots then are the last ones answered: in range, so the kernels read valid memory and their results are dropped);
// once the graph has finished, resync() restarts both counts from the device's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "cuda/device_allocator.h"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::cuda {

class RoutingMailbox {
 public:
  RoutingMailbox(DeviceAllocator& alloc, int64_t capacity);
  ~RoutingMailbox();
  RoutingMailbox(const RoutingMailbox&) = delete;
  RoutingMailbox& operator=(const RoutingMailbox&) = delete;

  const kernels::cuda::RoutingMailboxView& view() const { return view_; }
  // Spins until the GPU's count reaches `count`. Throws if `stream` fails or finishes first, or after `timeout_s`.
  void wait_published(uint32_t count, cudaStream_t stream, double timeout_s = 60.0) const;
  std::span<const int32_t> ids(int64_t n) const { return {host_words(0), static_cast<size_t>(n)}; }
  std::span<const int32_t> predicted(int64_t n) const { return {host_words(1), static_cast<size_t>(n)}; }
  // Writes the slots, then the answer count (release): the GPU reads the slots only after it sees the count.
  void answer(std::span<const int32_t> slots, uint32_t count);
  void release(uint32_t count);  // answers up to `count` without new slots
  // Only once no graph runs (its stream synchronised): answers up to the device's count of publications and returns
  // it, so that host and device agree again whatever an error left them at.
  uint32_t resync();

 private:
  int32_t* host_words(int64_t array) const;  // 0 ids, 1 predicted, 2 slots
  kernels::cuda::RoutingMailboxView view_{};
  void* host_ = nullptr;  // cudaHostAlloc'd, mapped
  DeviceBuffer device_count_;
};

}  // namespace lmlab::cuda
