#include "util/thread_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <system_error>

#include "lmlab/error.h"

namespace lmlab {

namespace {
thread_local bool t_in_pool_job = false;
constexpr auto kSpin = std::chrono::microseconds(30);

// Spins until done() or kSpin has passed; true when done() became true.
template <typename Done>
bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    if ((i & 63) == 63) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::yield();  // an oversubscribed machine (parallel test processes) runs others meanwhile
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}
std::unique_ptr<ThreadPool> g_pool;
std::mutex g_pool_mu;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  try {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    // The OS refused a thread (ulimit, memory): stop the ones started, then say so instead of terminating.
    const size_t started = workers_.size();
    stop_workers();
    throw Error(ErrorKind::out_of_memory, "thread pool",
                fmt::format("cannot start worker thread {} of {}: {}", started + 1, n_threads_ - 1, e.what()));
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  auto has_work = [&] { return stop_ || (generation_ != seen && next_chunk_ < chunks_total_); };
  for (;;) {
    if (!has_work()) {
      lock.unlock();
      spin_until([&] { return stop_.load(std::memory_order_relaxed) || generation_.load() != seen; });
      lock.lock();
      // A job published while this thread held no lock is seen here (the caller changes generation_ under mu_),
      // so it never sleeps through one: either it parks first and is notified, or the predicate holds.
      ++parked_;
      work_cv_.wait(lock, has_work);
      --parked_;
    }
    if (stop_) return;
    seen = generation_;
    while (next_chunk_ < chunks_total_) {
      const int64_t c = next_chunk_++;
      const auto* fn = job_;
      const int64_t begin = c * job_chunk_, end = std::min(job_n_, begin + job_chunk_);
      lock.unlock();
      run_chunk(*fn, begin, end);
      lock.lock();
      if (++chunks_done_ == chunks_total_) done_cv_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  // Four chunks per thread balances uneven work without much scheduling overhead.
  int64_t chunk = std::max(min_chunk, (n + 4 * n_threads_ - 1) / (4 * n_threads_));
  if (n_threads_ == 1 || t_in_pool_job || n <= chunk) {
    fn(0, n);
    return;
  }
  // One job at a time: callers on other threads (concurrent sessions) wait their turn.
  std::lock_guard<std::mutex> submit(submit_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  next_chunk_ = 0;
  chunks_done_ = 0;
  chunks_total_ = (n + chunk - 1) / chunk;
  ++generation_;
  if (parked_ > 0) work_cv_.notify_all();  // spinning workers see generation_ change by themselves
  while (next_chunk_ < chunks_total_) {
    const int64_t c = next_chunk_++;
    const int64_t begin = c * chunk, end = std::min(n, begin + chunk);
    lock.unlock();
    run_chunk(fn, begin, end);
    lock.lock();
    ++chunks_done_;
  }
  const int64_t total = chunks_total_;
  lock.unlock();
  if (!spin_until([&] { return chunks_done_.load() == total; })) {
    lock.lock();
    done_cv_.wait(lock, [&] { return chunks_done_ == chunks_total_; });
    lock.unlock();
  }
  lock.lock();
  job_ = nullptr;
  if (failed_) {
    std::exception_ptr e = std::move(failed_);
    failed_ = nullptr;
    std::rethrow_exception(e);  // the first failure of the job; its other chunks ran (or ran to their own throw)
  }
}

// A chunk on any thread. A task that throws must not end its thread (a worker would terminate the process): the
// first exception of the job is kept for parallel_for to rethrow on the caller's thread once every chunk is done.
void ThreadPool::run_chunk(const std::function<void(int64_t, int64_t)>& fn, int64_t begin, int64_t end) {
  t_in_pool_job = true;
  try {
    fn(begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_) failed_ = std::current_exception();
  }
  t_in_pool_job = false;
}

ThreadPool& ThreadPool::global() {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (!g_pool) g_pool = std::make_unique<ThreadPool>(static_cast<int>(std::thread::hardware_concurrency()));
  return *g_pool;
}

void ThreadPool::set_global_threads(int n_threads) {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  g_pool = std::make_unique<ThreadPool>(n_threads);
}

}  // namespace lmlab
