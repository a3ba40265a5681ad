// DirectReader: O_DIRECT (or the refused-O_DIRECT fallback) reads, accounting, and the thread-pool backend.
#include "experts/direct_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <thread>

#include "lmlab/error.h"

namespace lmlab {

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string_view read_mode_name(ReadMode m) { return m == ReadMode::direct ? "direct" : "buffered"; }

AlignedBuffer::AlignedBuffer(uint64_t bytes) {
  n_ = (bytes + DirectReader::kAlignment - 1) / DirectReader::kAlignment * DirectReader::kAlignment;
  if (n_ == 0) return;
  p_ = static_cast<uint8_t*>(std::aligned_alloc(DirectReader::kAlignment, n_));
  if (!p_)
    throw Error(ErrorKind::out_of_memory, "expert streaming", fmt::format("cannot allocate {} bytes", n_));
}

AlignedBuffer::~AlignedBuffer() { std::free(p_); }

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}

namespace {

// queue_depth blocking workers over one FIFO.
class ThreadBackend final : public DirectReader::Backend {
 public:
  ThreadBackend(DirectReader& reader, int n) : reader_(reader) {
    try {
      for (int i = 0; i < n; ++i) workers_.emplace_back([this] { loop(); });
    } catch (const std::system_error& e) {  // the OS refused a thread: join the started ones, then say so
      const size_t started = workers_.size();
      stop();
      throw Error(ErrorKind::out_of_memory, "expert reader",
                  fmt::format("cannot start I/O thread {} of {}: {}", started + 1, n, e.what()));
    }
  }
  ~ThreadBackend() override { stop(); }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  void submit(const ReadOp& op, DirectReader::Callback done) override {
    {
      std::lock_guard lk(mu_);
      queue_.push_back({op, std::move(done)});
    }
    cv_.notify_one();
  }
  std::string_view name() const override { return "threads"; }

 private:
  struct Job {
    ReadOp op;
    DirectReader::Callback done;
  };
  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and drained
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      reader_.note_start();
      const double t0 = monotonic_seconds();
      uint64_t got = 0;
      const int err = reader_.read_blocking(job.op, &got);
      reader_.note_done(job.op.nbytes, got, monotonic_seconds() - t0);
      job.done(err);
    }
  }

  DirectReader& reader_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
};

}  // namespace

std::unique_ptr<DirectReader::Backend> make_thread_backend(DirectReader& reader, int queue_depth) {
  return std::make_unique<ThreadBackend>(reader, queue_depth);
}

DirectReader::DirectReader(std::vector<std::filesystem::path> files, const Options& options)
    : files_(std::move(files)), queue_depth_(std::max(1, options.queue_depth)) {
  auto close_all = [&] {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  };
  auto open_all = [&](int flags) -> int {  // 0, or the errno of the first failure (files opened so far closed)
    for (const auto& f : files_) {
      const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC | flags);
      if (fd < 0) {
        const int err = errno;
        close_all();
        return err;
      }
      fds_.push_back(fd);
    }
    return 0;
  };
  if (options.force_buffered) {
    mode_ = ReadMode::buffered;
    mode_reason_ = "O_DIRECT disabled by the caller";
  } else if (int err = open_all(O_DIRECT); err == EINVAL) {
    mode_ = ReadMode::buffered;
    mode_reason_ = fmt::format("the filesystem refuses O_DIRECT (open: {})", std::strerror(err));
  } else if (err != 0) {
    throw Error(ErrorKind::io, files_[fds_.size()].string(), fmt::format("cannot open: {}", std::strerror(err)));
  } else {
    // Some filesystems accept the flag at open and refuse the reads: probe one aligned block of each file.
    AlignedBuffer probe(kAlignment);
    for (size_t i = 0; i < files_.size() && mode_ == ReadMode::direct; ++i) {
      uint64_t got = 0;
      note_start();
      const double t0 = monotonic_seconds();
      const int e = read_blocking({static_cast<int>(i), 0, kAlignment, 1, probe.data()}, &got);
      note_done(kAlignment, got, monotonic_seconds() - t0);
      if (e == EINVAL) {
        mode_ = ReadMode::buffered;
        mode_reason_ = fmt::format("the filesystem refuses O_DIRECT reads ({}: {})", files_[i].string(),
                                   std::strerror(e));
      } else if (e != 0) {
        close_all();
        throw Error(ErrorKind::io, files_[i].string(), fmt::format("read failed: {}", std::strerror(e)));
      }
    }
  }
  if (mode_ == ReadMode::buffered) {
    close_all();
    if (int err = open_all(0); err != 0)
      throw Error(ErrorKind::io, files_[fds_.size()].string(), fmt::format("cannot open: {}", std::strerror(err)));
  }
  if (options.use_uring) backend_ = make_uring_backend(*this, queue_depth_, &backend_reason_);
  else backend_reason_ = "io_uring not requested";
  if (!backend_) backend_ = make_thread_backend(*this, queue_depth_);
}

DirectReader::~DirectReader() {
  backend_.reset();  // drains and joins
  for (int fd : fds_) ::close(fd);
}

std::string_view DirectReader::backend_name() const { return backend_->name(); }

void DirectReader::submit(const ReadOp& op, Callback done) {
  if (op.file < 0 || op.file >= static_cast<int>(fds_.size()))
    throw Error(ErrorKind::internal, "DirectReader", fmt::format("no file {}", op.file));
  if (mode_ == ReadMode::direct &&
      ((op.offset | op.nbytes | reinterpret_cast<uintptr_t>(op.dst)) & (kAlignment - 1)) != 0)
    throw Error(ErrorKind::internal, files_[op.file].string(),
                fmt::format("unaligned O_DIRECT read of {} bytes at {}", op.nbytes, op.offset));
  backend_->submit(op, std::move(done));
}

void DirectReader::read_all(std::span<const ReadOp> ops) {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = ops.size();
  int first_err = 0;
  size_t first_bad = 0;
  for (size_t i = 0; i < ops.size(); ++i)
    submit(ops[i], [&, i](int err) {
      std::lock_guard lk(mu);
      if (err && !first_err) first_err = err, first_bad = i;
      if (--left == 0) cv.notify_all();
    });
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return left == 0; });
  if (first_err)
    throw Error(ErrorKind::io, files_[ops[first_bad].file].string(),
                fmt::format("read of {} bytes at offset {} failed: {}", ops[first_bad].nbytes, ops[first_bad].offset,
                            std::strerror(first_err)));
}

int DirectReader::read_blocking(const ReadOp& op, uint64_t* got) {
  const int fd = fds_[op.file];
  const uint64_t need = op.min_bytes ? op.min_bytes : op.nbytes;
  uint64_t done = 0;
  int err = 0;
  while (done < op.nbytes) {
    const ssize_t r = ::pread(fd, op.dst + done, op.nbytes - done, static_cast<off_t>(op.offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (r == 0) break;
    done += static_cast<uint64_t>(r);
    if (done >= need) break;  // complete, or short at end of file with what we need
  }
  if (mode_ == ReadMode::buffered)
    ::posix_fadvise(fd, static_cast<off_t>(op.offset), static_cast<off_t>(op.nbytes), POSIX_FADV_DONTNEED);
  *got = done;
  return err ? err : (done < need ? EIO : 0);
}

void DirectReader::note_start() {
  std::lock_guard lk(stats_mu_);
  if (in_flight_++ == 0) busy_since_ = monotonic_seconds();
}

void DirectReader::note_done(uint64_t requested, uint64_t got, double latency_seconds) {
  // O_DIRECT moves whole blocks: a read cut short by the end of the file still transfers its last block,
  // and that is what the kernel counts in /proc/self/io read_bytes.
  if (mode_ == ReadMode::direct && got < requested) got = std::min(requested, (got + kAlignment - 1) & ~(kAlignment - 1));
  std::lock_guard lk(stats_mu_);
  stats_.bytes += got;
  stats_.reads += 1;
  stats_.latency_seconds_sum += latency_seconds;
  const auto& b = StreamCounters::kLatencyBucketsSeconds;
  stats_.latency_counts[std::lower_bound(b.begin(), b.end(), latency_seconds) - b.begin()] += 1;
  if (--in_flight_ == 0) stats_.busy_seconds += monotonic_seconds() - busy_since_;
}

IoStats DirectReader::stats() const {
  std::lock_guard lk(stats_mu_);
  IoStats s = stats_;
  if (in_flight_ > 0) s.busy_seconds += monotonic_seconds() - busy_since_;
  return s;
}

}  // namespace lmlab
