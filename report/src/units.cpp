#include "units.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace lmlab::report_detail {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::fabs(bytes) >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.2f} {}", bytes, units[u]);
}

std::string grouped(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string gib_with_bytes(int64_t bytes) {
  const double gib = static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
  // Three significant digits at least: 0.0211 GiB for a 22 MB fixture, 17.2 GiB for a real model.
  const int decimals = gib >= 10 ? 1 : gib >= 1 ? 2 : std::max(2, 2 - static_cast<int>(std::floor(std::log10(gib > 0 ? gib : 1e-9))));
  return fmt::format("{:.{}f} GiB ({} bytes)", gib, decimals, grouped(bytes));
}

std::string short_error(const std::string& message, size_t max_chars) {
  if (message.size() <= max_chars) return message;
  return message.substr(0, max_chars - 3) + "...";
}

std::string md_cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : c == '\n' ? std::string(" ") : std::string(1, c);
  return out;
}

size_t display_width(std::string_view text) {
  // Asked to pad `text` to as many columns as it has bytes, fmt adds one space per byte beyond its width in columns;
  // measuring with fmt itself keeps a column's width and its cells' padding in one count.
  return 2 * text.size() - fmt::formatted_size("{:>{}}", text, text.size());
}

}  // namespace lmlab::report_detail
