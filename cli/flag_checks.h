// CLI11 validators for numeric flags that CLI11's own cannot express: CLI::Range lets NaN through (every
// comparison with NaN is false) and has no open bounds.
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <limits>
#include <string>

namespace lmlab::cli {

// A finite number x with lo <= x <= hi (lo < x when low_open).
inline CLI::Validator finite_range(double lo, double hi, bool low_open = false) {
  const std::string range = fmt::format("{}{}, {}]", low_open ? "(" : "[", lo, hi);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double x = 0;
        try {
          size_t used = 0;
          x = std::stod(text, &used);
          if (used != text.size()) return "'" + text + "' is not a number";
        } catch (const std::exception&) {
          return "'" + text + "' is not a number";
        }
        if (!std::isfinite(x) || x < lo || x > hi || (low_open && x == lo))
          return fmt::format("{} is outside {}", text, range);
        return {};
      },
      "FLOAT in " + range);
}

inline CLI::Validator finite_at_least(double lo) { return finite_range(lo, std::numeric_limits<double>::max()); }

}  // namespace lmlab::cli
