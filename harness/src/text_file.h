// Reading a small text file the lab was given (scenario, references, a model's config.json) with a size bound:
// an outside file larger than anything it could legitimately be is refused instead of read into memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace lmlab::harness_detail {

// Throws Error(io) naming the file and `what` when it cannot be opened, Error(invalid_input) when it is
// larger than max_bytes.
std::string read_text_file(const std::filesystem::path& file, const std::string& what, size_t max_bytes = size_t{16} << 20);

}  // namespace lmlab::harness_detail
