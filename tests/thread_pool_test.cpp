// The spin-then-park thread pool (util/thread_pool.h): every index of every job runs exactly once whether the
// workers are spinning (calls back to back), parked (gaps longer than the spin), nested, or fed by several
// outside threads at once.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
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

// A task that throws, on a worker or on the caller: parallel_for rethrows it on the calling thread after every
// other chunk ran, and the pool goes on working (a worker that let it escape would have terminated the process).
TEST(ThreadPool, AThrowingTaskComesBackToTheCallerAndThePoolGoesOn) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t bad : {int64_t{0}, int64_t{63}}) {  // the first chunk (the caller's) and the last (a worker's)
      std::vector<std::atomic<int>> seen(64);
      try {
        pool.parallel_for(64, [&](int64_t a, int64_t b) {
          for (int64_t i = a; i < b; ++i) {
            if (i == bad) throw std::runtime_error("task " + std::to_string(i));
            seen[static_cast<size_t>(i)].fetch_add(1);
          }
        });
        FAIL() << "no exception came back (" << threads << " threads)";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "task " + std::to_string(bad));
      }
      for (int64_t i = 0; i < 64; ++i) {
        EXPECT_LE(seen[static_cast<size_t>(i)].load(), 1) << "index " << i << " ran twice";
      }
      EXPECT_EQ(seen[static_cast<size_t>(bad)].load(), 0);
      expect_each_index_once(pool, 1000, 1);  // the pool still runs jobs
    }
  }
}

}  // namespace
}  // namespace lmlab
