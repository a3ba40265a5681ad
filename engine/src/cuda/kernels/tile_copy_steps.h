// Where a thread's 16-byte copies of a history tile go (the f16 prefill source, attention.cu): copies e = tid,
// tid + threads, ... of a tile of rows x `chunks` chunks are row e / chunks, chunk e % chunks, and row r's position
// j0 + r lies in KV block (j0 + r) / B at slot (j0 + r) % B. Stepped along from copy to copy: two divisions a tile
// instead of two a copy (runtime divisors: ~20 instructions each). Host and device code, so the CPU tests check it
// against the divisions (tests/tile_copy_steps_test.cpp).
#pragma once

#include "cuda/kernels/tq_host_device.h"

namespace lmlab::kernels::cuda {

struct TileCopySteps {
  int r, c, jb, slot;  // this copy's row of the tile, chunk of the row, KV block and slot in it
  int r_step, c_step, chunks, block_tokens;
  LMLAB_TQ_HD TileCopySteps(int tid, int threads, int chunks_per_row, int j0, int B)
      : r(tid / chunks_per_row),
        c(tid - r * chunks_per_row),
        jb((j0 + r) / B),
        slot(j0 + r - jb * B),
        r_step(threads / chunks_per_row),
        c_step(threads % chunks_per_row),
        chunks(chunks_per_row),
        block_tokens(B) {}
  // The copy `threads` further on.
  LMLAB_TQ_HD void next() {
    int dr = r_step;
    c += c_step;
    if (c >= chunks) c -= chunks, ++dr;
    r += dr, slot += dr;
    while (slot >= block_tokens) slot -= block_tokens, ++jb;
  }
};

}  // namespace lmlab::kernels::cuda
