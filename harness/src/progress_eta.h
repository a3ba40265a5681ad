// Progress lines with an ETA on a stream (stderr for bench, compare and regression): "[3/8] what  (12 s
// elapsed, ETA 20 s)". The ETA assumes the remaining units take as long as the finished ones on average.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace lmlab::harness_detail {

class ProgressEta {
 public:
  ProgressEta(std::ostream* out, std::string label, int64_t total);

  void step(const std::string& what);  // one unit done
  void skip(int64_t units);            // units that needed no work (they do not count toward the rate)
  void say(const std::string& line);   // a line without a unit
  int64_t done() const { return done_; }
  std::string eta_text() const;        // "(12 s elapsed, ETA 20 s)"

 private:
  std::ostream* out_;
  std::string label_;
  int64_t total_, done_ = 0, timed_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lmlab::harness_detail
