// io_uring backend of DirectReader: one ring of queue_depth entries. Any thread submits (under a mutex, the
// SQ side); one completion thread reaps (the CQ side), resubmits short reads, and tops the ring up from a
// FIFO of reads waiting for a free slot, so at most queue_depth reads are ever in flight.
#include "experts/direct_reader.h"

#ifdef LMLAB_HAVE_URING

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <thread>

namespace lmlab {

namespace {

class UringBackend final : public DirectReader::Backend {
 public:
  UringBackend(DirectReader& reader, int depth) : reader_(reader), depth_(depth) {}

  // Null, with *why set, when the kernel refuses a ring (too old, disabled by sysctl, seccomp).
  static std::unique_ptr<UringBackend> create(DirectReader& reader, int depth, std::string* why) {
    auto b = std::make_unique<UringBackend>(reader, depth);
    const int rc = io_uring_queue_init(static_cast<unsigned>(depth), &b->ring_, 0);
    if (rc < 0) {
      *why = fmt::format("io_uring_queue_init failed: {}", std::strerror(-rc));
      return nullptr;
    }
    try {
      b->reaper_ = std::thread([p = b.get()] { p->reap(); });
    } catch (const std::system_error& e) {  // no thread: tear the ring down here (live_ still false)
      io_uring_queue_exit(&b->ring_);
      *why = fmt::format("cannot start the reaper thread: {}", e.what());
      return nullptr;
    }
    b->live_ = true;
    return b;
  }

  ~UringBackend() override {
    if (!live_) return;
    {
      std::unique_lock lk(mu_);
      idle_cv_.wait(lk, [&] { return broken_ || (in_flight_ == 0 && pending_.empty()); });
      if (!broken_) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, nullptr);  // the reaper's stop signal
        flush();
      }
    }
    reaper_.join();
    io_uring_queue_exit(&ring_);
  }

  void submit(const ReadOp& op, DirectReader::Callback done) override {
    auto* job = new Job{op, std::move(done), 0, 0.0};
    std::unique_lock lk(mu_);
    if (broken_) {
      lk.unlock();
      job->done(EIO);
      delete job;
    } else if (in_flight_ < depth_) {
      start(job);
      push(job);
      flush();
    } else {
      pending_.push_back(job);
    }
  }

  std::string_view name() const override { return "io_uring"; }

 private:
  struct Job {
    ReadOp op;
    DirectReader::Callback done;
    uint64_t got;
    double t0;
  };

  // mu_ held.
  void start(Job* job) {
    ++in_flight_;
    reader_.note_start();
    job->t0 = monotonic_seconds();
  }
  void push(Job* job) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // never null: in_flight_ <= depth_ = SQ entries
    io_uring_prep_read(sqe, reader_.fd(job->op.file), job->op.dst + job->got,
                       static_cast<unsigned>(job->op.nbytes - job->got), job->op.offset + job->got);
    io_uring_sqe_set_data(sqe, job);
  }
  void flush() {
    while (io_uring_submit(&ring_) == -EINTR) {
    }
  }

  void reap() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) {  // the ring is broken: fail everything we know of rather than hang
        fail_all(-rc);
        return;
      }
      Job* job = static_cast<Job*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (!job) return;
      // The job was filled in under mu_ by the submitting thread and reached us through the kernel, which
      // orders it in fact but not in the C++ memory model: taking mu_ makes the hand-over visible to both.
      std::unique_lock lk(mu_);
      const uint64_t need = job->op.min_bytes ? job->op.min_bytes : job->op.nbytes;
      int err = 0;
      bool finished = true;
      if (res == -EAGAIN || res == -EINTR) {
        finished = false;
      } else if (res < 0) {
        err = -res;
      } else {
        job->got += static_cast<uint64_t>(res);
        if (job->got < need) {
          if (res == 0) err = EIO;  // end of file before what we need
          else finished = false;    // short read: ask for the rest
        }
      }
      if (!finished) {
        push(job);
        flush();
        continue;
      }
      const uint64_t requested = job->op.nbytes, got = job->got;
      const double latency = monotonic_seconds() - job->t0;
      lk.unlock();
      reader_.note_done(requested, got, latency);
      {
        std::lock_guard relk(mu_);
        --in_flight_;
        bool any = false;
        while (in_flight_ < depth_ && !pending_.empty()) {
          Job* next = pending_.front();
          pending_.pop_front();
          start(next);
          push(next);
          any = true;
        }
        if (any) flush();
        if (in_flight_ == 0 && pending_.empty()) idle_cv_.notify_all();
      }
      job->done(err);
      delete job;
    }
  }

  // Reads already in the ring are lost with it; their callers are told nothing (not seen in practice).
  void fail_all(int err) {
    std::deque<Job*> jobs;
    {
      std::lock_guard lk(mu_);
      jobs.swap(pending_);
      broken_ = true;
      idle_cv_.notify_all();
    }
    for (Job* j : jobs) {
      j->done(err);
      delete j;
    }
  }

  DirectReader& reader_;
  const int depth_;
  io_uring ring_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<Job*> pending_;
  int in_flight_ = 0;
  bool broken_ = false;
  bool live_ = false;  // the ring was set up
  std::thread reaper_;
};

}  // namespace

std::unique_ptr<DirectReader::Backend> make_uring_backend(DirectReader& reader, int queue_depth, std::string* why) {
  return UringBackend::create(reader, queue_depth, why);
}

}  // namespace lmlab

#else

namespace lmlab {

std::unique_ptr<DirectReader::Backend> make_uring_backend(DirectReader&, int, std::string* why) {
  *why = "built without liburing";
  return nullptr;
}

}  // namespace lmlab

#endif
