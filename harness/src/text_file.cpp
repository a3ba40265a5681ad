#include "text_file.h"

#include <fmt/format.h>

#include <fstream>

#include "lmlab/error.h"

namespace lmlab::harness_detail {

std::string read_text_file(const std::filesystem::path& file, const std::string& what, size_t max_bytes) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, file.string(), "cannot open the " + what);
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > max_bytes)
    throw Error(ErrorKind::invalid_input, file.string(), fmt::format("the {} is larger than {} bytes", what, max_bytes));
  return text;
}

}  // namespace lmlab::harness_detail
