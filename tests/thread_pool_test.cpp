// The spin-then-park thread pool (util/thread_pool.h): every index of every job runs exactly once whether the
// workers are spinning (calls back to back), parked (gaps longer than the spin), nested, or fed by several
// outside threads at once.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace lmlab {
namespace {

// Runs one parallel_for over n indices and checks each was visited once.
void expect_each_index_once(ThreadPool& pool, int64_t n, int64_t min_chunk) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  pool.parallel_for(
      n,
      [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
      },
      min_chunk);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
}

TEST(ThreadPool, BackToBackAndAfterParkingEveryIndexRunsOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 300; ++round) {
      expect_each_index_once(pool, 1 + round % 97, 1);
      // Now and then a gap well past the spin window, so the workers park and must be woken.
      if (round % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

TEST(ThreadPool, NestedCallsRunInlineAndOutsideCallersTakeTurns) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  auto work = [&] {
    for (int round = 0; round < 200; ++round)
      pool.parallel_for(16, [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i)
          pool.parallel_for(4, [&](int64_t c, int64_t d) { total.fetch_add(d - c); });  // inline in a worker
      });
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(total.load(), 2 * 200 * 16 * 4);
}

}  // namespace
}  // namespace lmlab
