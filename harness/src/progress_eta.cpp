#include "progress_eta.h"

#include <fmt/format.h>

#include <ostream>

namespace lmlab::harness_detail {

ProgressEta::ProgressEta(std::ostream* out, std::string label, int64_t total)
    : out_(out), label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()) {}

std::string ProgressEta::eta_text() const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (timed_ == 0) return fmt::format("({:.0f} s elapsed)", elapsed);
  const double eta = elapsed / static_cast<double>(timed_) * static_cast<double>(total_ - done_);
  return fmt::format("({:.0f} s elapsed, ETA {:.0f} s)", elapsed, eta);
}

void ProgressEta::step(const std::string& what) {
  ++done_;
  ++timed_;
  if (out_) *out_ << fmt::format("{}: [{}/{}] {}  {}\n", label_, done_, total_, what, eta_text()) << std::flush;
}

void ProgressEta::skip(int64_t units) { done_ += units; }

void ProgressEta::say(const std::string& line) {
  if (out_) *out_ << label_ << ": " << line << "\n" << std::flush;
}

}  // namespace lmlab::harness_detail
