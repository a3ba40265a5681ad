// The host side of the routing hand-off (see the header).
#include "cuda/routing_mailbox.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"

namespace lmlab::cuda {

namespace {
// Words of the mapped block: ready, go, then ids, predicted and slots of `capacity` each.
constexpr int64_t kHeaderWords = 2;
uint32_t* word(void* base, int64_t i) { return static_cast<uint32_t*>(base) + i; }
}  // namespace

RoutingMailbox::RoutingMailbox(DeviceAllocator& alloc, int64_t capacity)
    : device_count_(alloc, sizeof(uint32_t), "routing mailbox count") {
  kernels::cuda::load_routing_handshake();
  // The count first (nothing to free if it fails), and waited for: the memset goes on the default stream, which the
  // compute stream (non-blocking) is not ordered after.
  check(cudaMemset(device_count_.get(), 0, sizeof(uint32_t)), "routing mailbox count");
  check(cudaStreamSynchronize(nullptr), "routing mailbox count");
  const size_t bytes = static_cast<size_t>(kHeaderWords + 3 * capacity) * sizeof(uint32_t);
  check(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped), "routing mailbox");
  std::fill_n(static_cast<uint32_t*>(host_), bytes / sizeof(uint32_t), 0u);
  void* dev = nullptr;
  const cudaError_t e = cudaHostGetDevicePointer(&dev, host_, 0);
  if (e != cudaSuccess) {
    cudaFreeHost(host_);
    throw_cuda(e, "routing mailbox (mapped host memory)");
  }
  view_.device_count = device_count_.get<uint32_t>();
  view_.ready = word(dev, 0);
  view_.go = word(dev, 1);
  view_.ids = reinterpret_cast<int32_t*>(word(dev, kHeaderWords));
  view_.predicted = view_.ids + capacity;
  view_.slots = view_.predicted + capacity;
  view_.capacity = capacity;
}

RoutingMailbox::~RoutingMailbox() { cudaFreeHost(host_); }

// The host's view of the same words (its own pointer: equal to the device's under unified addressing, not assumed).
int32_t* RoutingMailbox::host_words(int64_t array) const {
  return reinterpret_cast<int32_t*>(word(host_, kHeaderWords)) + array * view_.capacity;
}

void RoutingMailbox::wait_published(uint32_t count, cudaStream_t stream, double timeout_s) const {
  std::atomic_ref<uint32_t> ready(*word(host_, 0));
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t spins = 0;; ++spins) {
    if (static_cast<int32_t>(ready.load(std::memory_order_acquire) - count) >= 0) return;
    if (spins % 1024 != 1023) continue;
    // Every ~1K polls: a fault in the graph, or a graph that ended without publishing, would leave us here forever.
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess && static_cast<int32_t>(ready.load(std::memory_order_acquire) - count) < 0)
      throw Error(ErrorKind::internal, "streamed decode graph", "the graph finished without publishing its routing");
    if (e != cudaSuccess && e != cudaErrorNotReady) throw_cuda(e, "streamed decode graph");
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s)
      throw Error(ErrorKind::internal, "streamed decode graph",
                  fmt::format("no routing published within {:.0f} s (waiting for publication {})", timeout_s, count));
    std::this_thread::yield();
  }
}

void RoutingMailbox::answer(std::span<const int32_t> slots, uint32_t count) {
  if (static_cast<int64_t>(slots.size()) > view_.capacity)
    throw Error(ErrorKind::internal, "routing mailbox", "more slots than it holds");
  std::copy(slots.begin(), slots.end(), host_words(2));
  release(count);
}

void RoutingMailbox::release(uint32_t count) {
  std::atomic_ref<uint32_t>(*word(host_, 1)).store(count, std::memory_order_release);
}

uint32_t RoutingMailbox::resync() {
  uint32_t c = 0;
  check(cudaMemcpy(&c, device_count_.get(), sizeof(c), cudaMemcpyDeviceToHost), "routing mailbox count");
  release(c);
  return c;
}

}  // namespace lmlab::cuda
