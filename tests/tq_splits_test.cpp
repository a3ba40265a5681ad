// The TurboQuant decode's splits of the history (engine/src/cuda/kernels/tq_splits.h, host and device code): they
// tile it exactly, in order, and the late ones hold the positions fewer they were asked to, on the CPU (CI has no GPU).
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/kernels/tq_splits.h"

namespace lmlab {
namespace {

using kernels::cuda::tq::split_span;

TEST(TqSplits, EvenSplitsAreTheCeilingShares) {
  for (const int64_t len : {1, 5, 64, 1000, 100001})
    for (const int64_t splits : {1, 3, 8, 66}) {
      const int64_t per = (len + splits - 1) / splits;
      for (int64_t s = 0; s < splits; ++s) {
        const auto span = split_span(len, splits, s, 0, 100);
        EXPECT_EQ(span.begin, s * per) << len << " " << splits << " " << s;
        EXPECT_EQ(span.end, std::min(len, (s + 1) * per)) << len << " " << splits << " " << s;
      }
    }
}

TEST(TqSplits, LateSplitsHoldFewerAndAllTileTheHistory) {
  for (const int64_t len : {1, 7, 130, 4000, 40001, 100001})
    for (const int64_t splits : {1, 2, 9, 66})
      for (const int64_t late : {0, 1, 4, 8, 66})
        for (const int64_t fewer : {0, 40, 128, 5000}) {
          SCOPED_TRACE(::testing::Message() << "len " << len << " splits " << splits << " late " << late << " fewer "
                                            << fewer);
          int64_t at = 0, early_size = -1;
          for (int64_t s = 0; s < splits; ++s) {
            const auto span = split_span(len, splits, s, late, fewer);
            if (span.end <= span.begin) {  // empty: nothing left for it
              EXPECT_EQ(at, len) << "split " << s << " is empty before the history's end";
              continue;
            }
            ASSERT_EQ(span.begin, at) << "split " << s << " starts where the one before ended";
            at = span.end;
            const bool is_late = late < splits && s >= splits - late;
            if (!is_late && span.end < len) {
              if (early_size < 0) early_size = span.end - span.begin;
              EXPECT_EQ(span.end - span.begin, early_size) << "early split " << s << " holds an even share";
            }
            if (is_late && early_size > 0 && span.end < len) {
              const int64_t cap = (len + splits - 1) / splits / 2;  // at most half an even share fewer
              EXPECT_EQ(early_size - (span.end - span.begin), std::min(fewer, cap)) << "late split " << s;
            }
          }
          EXPECT_EQ(at, len) << "the splits cover the history";
        }
}

}  // namespace
}  // namespace lmlab
