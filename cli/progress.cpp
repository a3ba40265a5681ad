#include "progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

namespace lmlab::cli {

WriteProgressFn stderr_progress(const std::string& label) {
  const bool tty = isatty(fileno(stderr)) != 0;
  auto last_decile = std::make_shared<int>(-1);
  return [label, tty, last_decile](const WriteProgress& p) {
    const double mb = 1e6, done = static_cast<double>(p.bytes_done) / mb, total = static_cast<double>(p.bytes_total) / mb;
    const double pct = p.bytes_total ? 100.0 * static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 100.0;
    const double rate = p.seconds > 0 ? done / p.seconds : 0.0;
    const bool finished = p.bytes_done >= p.bytes_total;
    const std::string line = fmt::format("{}: {:.1f} / {:.1f} MB written ({:.1f}%), {:.1f} MB/s written", label, done, total, pct, rate);
    if (tty) {
      fmt::print(stderr, "\r{:<100.100}{}", finished ? line : line + "  " + p.tensor, finished ? "\n" : "");
    } else {
      const int decile = static_cast<int>(pct / 10.0);
      if (decile == *last_decile && !finished) return;
      *last_decile = decile;
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  };
}

}  // namespace lmlab::cli
