// Device memory a kernel asks L2 to fetch ahead of its use (cp.async.bulk.prefetch.L2, l2_prefetch.cuh): the weights
// of the GEMVs after a decode attention that leaves HBM idle. TurboQuant's decode is bound by its instructions
// (~1.4 TB/s of KV at 100K positions on an H100 whose HBM reads ~3.35), and the GEMVs after it are bound by their
// loads' latency, which an L2 hit shortens. Host and device code, so tests/l2_prefetch_test.cpp checks on the CPU
// how a launch's blocks share the ranges.
#pragma once

#include <cstdint>

#include "cuda/kernels/tq_host_device.h"

namespace lmlab::kernels::cuda {

inline constexpr int kMaxL2Ranges = 12;
inline constexpr uint32_t kL2ChunkBytes = 32 * 1024;  // bytes per prefetch instruction at most

struct L2Prefetch {
  uint64_t begin[kMaxL2Ranges] = {};  // 16-byte aligned addresses
  uint64_t units[kMaxL2Ranges] = {};  // 16-byte units from begin
  int n = 0;
  int from_percent = 0;  // a block issues its share once it has done this share of its work

  // Adds the 16-byte aligned interior of [p, p + bytes) (the instruction's alignment; a few bytes at either end are
  // left to the kernel that reads them). False when the list is full.
  bool add(const void* p, uint64_t bytes) {
    if (n == kMaxL2Ranges) return false;
    const uint64_t a = reinterpret_cast<uintptr_t>(p), first = (a + 15) / 16 * 16, end = (a + bytes) / 16 * 16;
    if (end > first) begin[n] = first, units[n] = (end - first) / 16, ++n;
    return true;
  }
  LMLAB_TQ_HD uint64_t total_units() const {
    uint64_t t = 0;
    for (int i = 0; i < n; ++i) t += units[i];
    return t;
  }
};

// f(address, bytes) for block b's share of p among `blocks`: the ranges' units in order, split evenly by their place
// in that order, each call at most kL2ChunkBytes. Every unit goes to exactly one block.
template <class F>
LMLAB_TQ_HD void for_l2_share(const L2Prefetch& p, int64_t b, int64_t blocks, F&& f) {
  const uint64_t total = p.total_units();
  const uint64_t lo = total * static_cast<uint64_t>(b) / static_cast<uint64_t>(blocks);
  const uint64_t hi = total * static_cast<uint64_t>(b + 1) / static_cast<uint64_t>(blocks);
  uint64_t at = 0;  // the first unit of range i in the order
  for (int i = 0; i < p.n && at < hi; at += p.units[i], ++i) {
    const uint64_t s = lo > at ? lo : at, e = hi < at + p.units[i] ? hi : at + p.units[i];
    for (uint64_t a = p.begin[i] + (s - at) * 16, left = e > s ? (e - s) * 16 : 0; left > 0;) {
      const uint32_t c = left < kL2ChunkBytes ? static_cast<uint32_t>(left) : kL2ChunkBytes;
      f(a, c);
      a += c, left -= c;
    }
  }
}

}  // namespace lmlab::kernels::cuda
