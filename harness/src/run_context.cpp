// Facts recorded with a run: the host's name, the checkout's git commit, the model's size on disk.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <memory>

#include "lmlab/error.h"
#include "lmlab/harness.h"

namespace lmlab {

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf.data();
}

std::string git_describe(const std::filesystem::path& dir) {
  // The path is quoted for the shell; a checkout path with a single quote is not expected here.
  const std::string cmd = "git -C '" + dir.string() + "' describe --always --dirty --abbrev=12 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
  if (!pipe) return {};
  std::string out;
  std::array<char, 128> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
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
