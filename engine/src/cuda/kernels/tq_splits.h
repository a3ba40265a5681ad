// Which history positions each split of a TurboQuant decode attends (tq_records.cuh's split_range): host and device
// code, so tests/tq_splits_test.cpp checks on the CPU that the splits tile the history.
// The splits share the history evenly but for the last `late` ones, which start only when the encode of the step's
// token leaves the SMs it holds: a decode's blocks are placed in launch order, so the ones an encode block keeps off
// its SM are the last (turboquant.cu's late_decode_splits counts them). Each late split holds `fewer` positions
// less (at most half an even share) and the others share what they drop, so every split ends at about the same time.
#pragma once

#include <cstdint>

#include "cuda/kernels/tq_host_device.h"

namespace lmlab::kernels::cuda::tq {

// Positions [begin, end) of the history's len (offsets from its first position); empty when begin >= end.
struct SplitSpan {
  int64_t begin, end;
};

LMLAB_TQ_HD SplitSpan split_span(int64_t len, int64_t splits, int64_t split, int64_t late, int64_t fewer) {
  if (late >= splits || fewer < 0) late = 0;
  const int64_t half_share = (len + splits - 1) / splits / 2;
  fewer = late > 0 ? (fewer < half_share ? fewer : half_share) : 0;
  const int64_t per = (len + late * fewer + splits - 1) / splits, early = splits - late;
  const int64_t begin = split * per - (split > early ? split - early : 0) * fewer;
  const int64_t end = begin + (split < early ? per : per - fewer);
  return {begin, end < len ? end : len};
}

}  // namespace lmlab::kernels::cuda::tq
