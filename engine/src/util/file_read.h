// Opening files a model directory names: a FIFO, socket, device or directory where a file should be fails at
// once (open(2) of a FIFO with no writer blocks forever), and text files are read whole only up to a bound.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace lmlab {

// An O_RDONLY | O_CLOEXEC descriptor of a regular file (the caller closes it); Error(io) naming the path
// when it cannot be opened or is not a regular file.
int open_regular_file(const std::filesystem::path& path);

// The whole file; Error(io) as above, or when it is larger than max_bytes.
std::string read_regular_file(const std::filesystem::path& path, uint64_t max_bytes);

}  // namespace lmlab
