// The f16 prefill source's stepped copy indices (engine/src/cuda/kernels/tile_copy_steps.h) against the divisions
// they replace, for every head_dim's chunks per row (64, 80, 96, 128, 256: 8, 10, 12, 16, 32), KV blocks of 7 to 48
// positions and tiles starting anywhere in a block. Host code, so CI (no GPU) checks the math the kernel uses.
#include <gtest/gtest.h>

#include "cuda/kernels/tile_copy_steps.h"

namespace lmlab {
namespace {

TEST(TileCopySteps, EveryCopyNamesTheRowChunkBlockAndSlotOfItsIndex) {
  constexpr int kThreads = 128, kRows = 64;  // prefill_attention.cuh's block and tile
  for (int chunks : {8, 10, 12, 16, 32})
    for (int B : {7, 16, 32, 48})
      for (int j0 : {0, 5, 31, 1000, 4097})
        for (int tid = 0; tid < kThreads; ++tid) {
          SCOPED_TRACE(::testing::Message() << "chunks " << chunks << ", B " << B << ", j0 " << j0 << ", tid " << tid);
          kernels::cuda::TileCopySteps at(tid, kThreads, chunks, j0, B);
          int copies = 0;
          for (int e = tid; e < kRows * chunks; e += kThreads, at.next(), ++copies) {
            const int r = e / chunks, j = j0 + r;
            ASSERT_EQ(at.r, r);
            ASSERT_EQ(at.c, e % chunks);
            ASSERT_EQ(at.jb, j / B);
            ASSERT_EQ(at.slot, j % B);
          }
          ASSERT_EQ(copies, (kRows * chunks - tid + kThreads - 1) / kThreads);
        }
}

}  // namespace
}  // namespace lmlab
