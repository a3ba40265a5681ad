// Facts recorded with a run: the host's name and fingerprint, the checkout's git commit, the model's size on disk.
#include <sched.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "lmlab/error.h"
#include "lmlab/harness.h"

namespace lmlab {

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf.data();
}

namespace {
// The value of the first "key<spaces>: value" line of a /proc file; empty when absent.
std::string proc_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}
}  // namespace

std::string host_fingerprint() {
  // Not the host name: CI machines get fresh names, and one name may move to other hardware.
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
  const std::string cpu = proc_field("/proc/cpuinfo", "model name");
  const std::string mem_kb = proc_field("/proc/meminfo", "MemTotal");
  const double gib = mem_kb.empty() ? 0 : std::atof(mem_kb.c_str()) / (1024.0 * 1024.0);
  return "cpu=" + (cpu.empty() ? std::string("unknown") : cpu) + "; cpus=" + std::to_string(cpus) +
         "; mem=" + std::to_string(static_cast<int64_t>(std::lround(gib))) + "GiB";
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
