// A fixed pool of worker threads for data-parallel loops (matmul rows, attention heads).
// parallel_for splits [0, n) into contiguous chunks, runs them on the workers and the calling thread,
// and returns when all are done. Nested calls from a worker run inline (no deadlock, no oversubscription);
// calls from several outside threads run one after another. A task that throws: the job's other chunks still run,
// then parallel_for rethrows the first exception on the calling thread (never on a worker, which would terminate).
// Spin, then park: a decode step of a small model is hundreds of parallel_for calls a few microseconds apart,
// and a futex wake-up per call (plus the woken thread's scheduling latency) cost more than the work. So an idle
// worker spins on the job counter for kSpin before it sleeps on the condition variable, the caller wakes only
// sleeping workers, and waits for the last chunk by spinning as long before it sleeps.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lmlab {

class ThreadPool {
 public:
  // Throws Error(out_of_memory, "thread pool") when the OS cannot start the threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // fn(begin, end) over chunks of [0, n); min_chunk bounds the task granularity.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

  // The process-wide pool used by kernels; set_global_threads(0) means hardware_concurrency.
  static ThreadPool& global();
  static void set_global_threads(int n_threads);

 private:
  void worker_loop(int index);
  void run_chunk(const std::function<void(int64_t, int64_t)>& fn, int64_t begin, int64_t end);
  void stop_workers();  // joins every started worker

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_mu_;  // serialises parallel_for calls from different outside threads
  std::mutex mu_;         // guards the job; the atomics are also read without it, by spinning threads
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 0;
  int64_t next_chunk_ = 0, chunks_total_ = 0;
  std::atomic<int64_t> chunks_done_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  int parked_ = 0;  // workers asleep on work_cv_ (under mu_): only then does a new job notify
  std::exception_ptr failed_;  // the running job's first exception (under mu_)
};

}  // namespace lmlab
