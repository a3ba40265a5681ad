// The opt-in decode kernels (kernels_cuda.h DecodeOptions): from the environment once per process, or what
// set_decode_options said last.
#include <atomic>
#include <cstdlib>
#include <string_view>

#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

constexpr unsigned kPipeline = 1, kPair = 2, kRouting = 4;

unsigned bits_of(const DecodeOptions& o) {
  return (o.gemv_pipeline ? kPipeline : 0) | (o.gate_up_pair ? kPair : 0) | (o.fused_routing ? kRouting : 0);
}

std::atomic<unsigned>& chosen() {
  static std::atomic<unsigned> bits{[] {
    auto on = [](const char* name) {
      const char* e = std::getenv(name);
      return e && std::string_view(e) == "1";
    };
    return bits_of({on("LMLAB_GEMV_PIPELINE"), on("LMLAB_GATE_UP_PAIR"), on("LMLAB_FUSED_ROUTING")});
  }()};
  return bits;
}

}  // namespace

DecodeOptions decode_options() {
  const unsigned b = chosen().load(std::memory_order_relaxed);
  return {(b & kPipeline) != 0, (b & kPair) != 0, (b & kRouting) != 0};
}

void set_decode_options(const DecodeOptions& o) { chosen().store(bits_of(o), std::memory_order_relaxed); }

}  // namespace lmlab::kernels::cuda
