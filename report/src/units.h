// Human units shared by the renderers: bytes as B/KiB/MiB/GiB, model sizes in GiB with enough digits that a
// small model never prints as 0.00.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lmlab::report_detail {

std::string human_bytes(double bytes);        // "3.19 MiB", "512 B"
std::string gib_with_bytes(int64_t bytes);    // "0.0211 GiB (22,618,744 bytes)"
std::string grouped(int64_t value);           // "22,618,744"
std::string short_error(const std::string& message, size_t max_chars);
std::string md_cell(const std::string& text);  // a markdown table cell: '|' escaped, newlines as spaces
// The terminal columns of UTF-8 `text` as fmt counts them when it pads a cell (code points, East Asian wide ones as
// two): widths of console table columns holding user text are measured with this, never with size() (bytes).
size_t display_width(std::string_view text);

}  // namespace lmlab::report_detail
