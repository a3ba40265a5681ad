#include "display_names.h"

#include <array>
#include <utility>

namespace lmlab::report_detail {

std::string display_name(const std::string& config) {
  static const std::array<std::pair<const char*, const char*>, 4> kNames = {{
      {"vanilla", "Vanilla"}, {"ssd", "SSD Stream"}, {"turbo", "TurboQuant"}, {"ssd+turbo", "SSD + TurboQuant"}}};
  for (const auto& [name, shown] : kNames)
    if (config == name) return shown;
  return config;
}

}  // namespace lmlab::report_detail
