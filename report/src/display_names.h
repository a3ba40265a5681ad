// The names reports show for the four preset configs (SwiftLM's): vanilla -> "Vanilla", ssd -> "SSD Stream",
// turbo -> "TurboQuant", ssd+turbo -> "SSD + TurboQuant". Other config names are shown as recorded. CSV and
// JSON keep the recorded names (they are keys for other tools).
#pragma once

#include <string>

namespace lmlab::report_detail {

std::string display_name(const std::string& config);

}  // namespace lmlab::report_detail
