// The decode kernels chosen by the environment (kernels_cuda.h DecodeOptions), read once per process, or what
// set_decode_options said last.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>

#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

constexpr unsigned kPair = 1, kRouting = 2, kTqBlocks6 = 4, kTqBlocks8 = 8;
constexpr unsigned kMmaShift = 4, kMmaMask = 15;  // tq_decode_mma_min_group in bits 4-7
constexpr unsigned kTqEarly = 1u << 8, kTqWarps = 1u << 9, kTqBulk = 1u << 10, kTqCodes = 1u << 11;
constexpr unsigned kLatePositionsShift = 12, kLatePositionsMask = 4095;  // tq_late_positions in bits 12-23
constexpr unsigned kLateSplitsShift = 24, kLateSplitsMask = 15;          // tq_late_splits in bits 24-27
constexpr unsigned kTqPvColumns = 1u << 28;

unsigned bits_of(const DecodeOptions& o) {
  const unsigned tq = o.tq_decode_min_blocks >= 8 ? kTqBlocks8 : o.tq_decode_min_blocks >= 6 ? kTqBlocks6 : 0;
  // 0 (or less) reads as "never", like anything above 8.
  const int g = o.tq_decode_mma_min_group;
  const unsigned mma = static_cast<unsigned>(g <= 0 ? 15 : std::min(g, 15));
  return (o.gate_up_pair ? kPair : 0) | (o.fused_routing ? kRouting : 0) | tq | mma << kMmaShift |
         (o.tq_early_start ? kTqEarly : 0) | (o.tq_decode_warps ? kTqWarps : 0) | (o.tq_bulk_copies ? kTqBulk : 0) |
         (o.tq_prefill_codes ? kTqCodes : 0) |
         static_cast<unsigned>(std::clamp(o.tq_late_positions, 0, int{kLatePositionsMask})) << kLatePositionsShift |
         static_cast<unsigned>(std::clamp(o.tq_late_splits, 0, int{kLateSplitsMask})) << kLateSplitsShift |
         (o.tq_pv_columns ? kTqPvColumns : 0);
}

std::atomic<unsigned>& chosen() {
  static std::atomic<unsigned> bits{[] {
    auto is = [](const char* name, std::string_view value) {
      const char* e = std::getenv(name);
      return e && std::string_view(e) == value;
    };
    const char* tq = std::getenv("LMLAB_TQ_DECODE_MIN_BLOCKS");
    const char* mma = std::getenv("LMLAB_TQ_DECODE_MMA_MIN_GROUP");
    const char* late_positions = std::getenv("LMLAB_TQ_LATE_POSITIONS");
    const char* late_splits = std::getenv("LMLAB_TQ_LATE_SPLITS");
    return bits_of({!is("LMLAB_GATE_UP_PAIR", "0"), is("LMLAB_FUSED_ROUTING", "1"), tq ? std::atoi(tq) : 0,
                    mma ? std::atoi(mma) : kTqDecodeMmaMinGroup, !is("LMLAB_TQ_EARLY_START", "0"),
                    !is("LMLAB_TQ_DECODE_WARPS", "0"), !is("LMLAB_TQ_BULK_COPIES", "0"),
                    !is("LMLAB_TQ_PREFILL_CODES", "0"),
                    late_positions ? std::atoi(late_positions) : kTqLatePositions,
                    late_splits ? std::atoi(late_splits) : 0, is("LMLAB_TQ_PV_COLUMNS", "1")});
  }()};
  return bits;
}

}  // namespace

DecodeOptions decode_options() {
  const unsigned b = chosen().load(std::memory_order_relaxed);
  return {(b & kPair) != 0, (b & kRouting) != 0, (b & kTqBlocks8) ? 8 : (b & kTqBlocks6) ? 6 : 0,
          static_cast<int>((b >> kMmaShift) & kMmaMask), (b & kTqEarly) != 0, (b & kTqWarps) != 0,
          (b & kTqBulk) != 0, (b & kTqCodes) != 0, static_cast<int>((b >> kLatePositionsShift) & kLatePositionsMask),
          static_cast<int>((b >> kLateSplitsShift) & kLateSplitsMask), (b & kTqPvColumns) != 0};
}

void set_decode_options(const DecodeOptions& o) { chosen().store(bits_of(o), std::memory_order_relaxed); }

}  // namespace lmlab::kernels::cuda
