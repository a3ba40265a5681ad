// DirectReader: reads byte ranges of a fixed set of files past the page cache, many at once.
//
// Mode: O_DIRECT (offsets, lengths and buffers 4 KiB-aligned; ExpertLayout plans reads that way) when every
// file accepts it. A filesystem that refuses O_DIRECT (EINVAL at open or on the first aligned read: tmpfs,
// some FUSE) gets the one fallback, pread + posix_fadvise(POSIX_FADV_DONTNEED) so the pages do not
// accumulate; mode() and mode_reason() say which is in use and why, never silently.
// Issue: an io_uring ring of queue_depth entries with one completion thread (when built with liburing and
// the kernel allows it), else queue_depth worker threads each doing blocking preads.
// Accounting: bytes the kernel delivered, read count, busy wall time (>= 1 read in flight), latency histogram.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "lmlab/stream_counters.h"

namespace lmlab {

enum class ReadMode { direct, buffered };
std::string_view read_mode_name(ReadMode m);  // "direct" | "buffered"

// Read file[file] bytes [offset, offset + nbytes) into dst. The read may end early at end of file but must
// deliver at least min_bytes (0 means nbytes). In direct mode offset, nbytes and dst are 4 KiB-aligned.
struct ReadOp {
  int file = 0;
  uint64_t offset = 0, nbytes = 0, min_bytes = 0;
  uint8_t* dst = nullptr;
};

// Cumulative I/O statistics of a reader.
struct IoStats {
  uint64_t bytes = 0, reads = 0;
  double busy_seconds = 0.0;
  std::array<uint64_t, StreamCounters::kLatencyBucketsSeconds.size() + 1> latency_counts{};
  double latency_seconds_sum = 0.0;
};

class DirectReader {
 public:
  static constexpr uint64_t kAlignment = 4096;

  struct Options {
    int queue_depth = 8;         // reads in flight at most
    bool use_uring = true;       // io_uring when available, else worker threads
    bool force_buffered = false; // tests: behave as if O_DIRECT were refused
  };

  // err: 0 on success, else an errno value (EIO also for an unexpected end of file). Called exactly once,
  // on an I/O thread (or inline from submit when the reader is shutting down); it must not block on I/O.
  using Callback = std::function<void(int err)>;

  DirectReader(std::vector<std::filesystem::path> files, const Options& options);
  ~DirectReader();  // waits for every submitted read to complete
  DirectReader(const DirectReader&) = delete;
  DirectReader& operator=(const DirectReader&) = delete;

  ReadMode mode() const { return mode_; }
  const std::string& mode_reason() const { return mode_reason_; }  // empty in direct mode
  std::string_view backend_name() const;                           // "io_uring" | "threads"
  const std::string& backend_reason() const { return backend_reason_; }  // why threads when uring was asked
  int queue_depth() const { return queue_depth_; }
  const std::filesystem::path& path(int file) const { return files_.at(file); }

  void submit(const ReadOp& op, Callback done);
  // Submits all and waits; throws Error(io) naming the file and offset of the first failure.
  void read_all(std::span<const ReadOp> ops);
  IoStats stats() const;

  // Internal to the backends: blocking read of one op at most to its end (loops over short reads), fadvise
  // in buffered mode; returns 0 or an errno value and the bytes delivered.
  int read_blocking(const ReadOp& op, uint64_t* got);
  void note_start();
  void note_done(uint64_t requested, uint64_t got, double latency_seconds);
  int fd(int file) const { return fds_[file]; }

  class Backend;

 private:
  std::vector<std::filesystem::path> files_;
  std::vector<int> fds_;
  ReadMode mode_ = ReadMode::direct;
  std::string mode_reason_, backend_reason_;
  int queue_depth_ = 8;
  std::unique_ptr<Backend> backend_;

  mutable std::mutex stats_mu_;
  IoStats stats_;
  int in_flight_ = 0;
  double busy_since_ = 0.0;
};

class DirectReader::Backend {
 public:
  virtual ~Backend() = default;
  virtual void submit(const ReadOp& op, Callback done) = 0;
  virtual std::string_view name() const = 0;
};

// Backends (direct_reader.cpp, direct_reader_uring.cpp). make_uring_backend returns null and sets *why when
// io_uring is not built in or the kernel refuses a ring.
std::unique_ptr<DirectReader::Backend> make_thread_backend(DirectReader& reader, int queue_depth);
std::unique_ptr<DirectReader::Backend> make_uring_backend(DirectReader& reader, int queue_depth, std::string* why);

// 4 KiB-aligned heap memory (for O_DIRECT), freed on destruction.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  uint8_t* data() const { return p_; }
  uint64_t size() const { return n_; }

 private:
  uint8_t* p_ = nullptr;
  uint64_t n_ = 0;
};

double monotonic_seconds();

}  // namespace lmlab
