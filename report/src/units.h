// Human units shared by the renderers: bytes as B/KiB/MiB/GiB, model sizes in GiB with enough digits that a
// small model never prints as 0.00.
#pragma once

#include <cstdint>
#include <string>

namespace lmlab::report_detail {

std::string human_bytes(double bytes);        // "3.19 MiB", "512 B"
std::string gib_with_bytes(int64_t bytes);    // "0.0211 GiB (22,618,744 bytes)"
std::string grouped(int64_t value);           // "22,618,744"
std::string short_error(const std::string& message, size_t max_chars);
std::string md_cell(const std::string& text);  // a markdown table cell: '|' escaped, newlines as spaces

}  // namespace lmlab::report_detail
