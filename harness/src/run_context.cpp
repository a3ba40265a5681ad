// Facts recorded with a run: the host's name and the model's size on disk (the commit is compiled in:
// build_info(); the machine: environment.cpp).
#include <unistd.h>

#include <array>

#include "lmlab/error.h"
#include "lmlab/harness.h"

namespace lmlab {

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf.data();
}

int64_t safetensors_bytes(const std::filesystem::path& model_dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(model_dir, ec);
  if (ec) throw Error(ErrorKind::io, model_dir.string(), "cannot list the model directory: " + ec.message());
  int64_t total = 0;
  for (const auto& entry : it)
    if (entry.path().extension() == ".safetensors" && entry.is_regular_file()) total += static_cast<int64_t>(entry.file_size());
  if (total == 0) throw Error(ErrorKind::model_format, model_dir.string(), "no *.safetensors files in the model directory");
  return total;
}

}  // namespace lmlab
