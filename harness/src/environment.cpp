// probe_environment(): the machine a run is measured on, from /proc and /etc files only (and the engine's own
// cpu_kernels_isa(), which no file states); host_fingerprint(): the
// part of it that decides whether absolute times of two runs compare (the gate's same-host check). Each file is
// read up to kMaxFileBytes (a /proc/cpuinfo of a 512-core host is ~1 MB: the model name is on its first lines;
// the count of "processor" lines then undercounts, so cores falls back to the scheduler's count past the cap).
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "lmlab/cpu_kernels.h"
#include "lmlab/harness.h"

namespace lmlab {

namespace {

constexpr size_t kMaxFileBytes = 256 * 1024;
constexpr size_t kMaxGpus = 64;

// The file's first kMaxFileBytes bytes; "" when it cannot be read. `truncated` says whether there was more.
std::string read_bounded(const std::filesystem::path& file, bool* truncated = nullptr) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  // In 4 KiB steps: /proc files report size 0, so the size cannot be asked first.
  std::string text;
  char buf[4096];
  while (text.size() < kMaxFileBytes && in.read(buf, std::min(sizeof buf, kMaxFileBytes - text.size())).gcount() > 0)
    text.append(buf, static_cast<size_t>(in.gcount()));
  if (truncated) *truncated = text.size() == kMaxFileBytes && in.peek() != EOF;
  return text;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// Values of "key<sep>value" lines whose key (trimmed) equals `key`.
std::vector<std::string> values_of(const std::string& text, std::string_view key, char sep) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(sep);
    if (colon == std::string::npos) continue;
    if (trim(std::string_view(line).substr(0, colon)) == key) out.push_back(trim(std::string_view(line).substr(colon + 1)));
  }
  return out;
}

std::string first_value(const std::string& text, std::string_view key, char sep) {
  auto v = values_of(text, key, sep);
  return v.empty() ? std::string() : v.front();
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) s = s.substr(1, s.size() - 2);
  return s;
}

// The first dotted number after "Kernel Module" on the NVRM line: "NVIDIA UNIX x86_64 Kernel Module  550.54.14
// Thu Feb 22 ..." and the open modules' "NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build".
std::string nvidia_driver_version(const std::string& text) {
  const std::string marker = "Kernel Module";
  const auto at = text.find(marker);
  if (at == std::string::npos) return {};
  std::istringstream rest(text.substr(at + marker.size(), 200));
  for (std::string word; rest >> word;)
    if (std::isdigit(static_cast<unsigned char>(word[0])) && word.find('.') != std::string::npos &&
        word.find_first_not_of("0123456789.") == std::string::npos)
      return word;
  return {};
}

}  // namespace

Environment probe_environment(const std::filesystem::path& root) {
  Environment env;
  const std::filesystem::path proc = root / "proc";
  bool cpuinfo_truncated = false;
  const std::string cpuinfo = read_bounded(proc / "cpuinfo", &cpuinfo_truncated);
  env.cpu_model = first_value(cpuinfo, "model name", ':');
  if (env.cpu_model.empty()) env.cpu_model = first_value(cpuinfo, "Model", ':');  // arm64 kernels
  env.cpu_isa = cpu_kernels_isa();  // the engine's own choice, not a file
  env.cores = static_cast<int64_t>(values_of(cpuinfo, "processor", ':').size());
  if (env.cores == 0 || cpuinfo_truncated) env.cores = static_cast<int64_t>(std::thread::hardware_concurrency());

  std::istringstream mem_total(first_value(read_bounded(proc / "meminfo"), "MemTotal", ':'));
  int64_t kib = 0;
  if (mem_total >> kib && kib > 0) env.ram_bytes = kib * 1024;

  env.gpu_driver = nvidia_driver_version(read_bounded(proc / "driver" / "nvidia" / "version"));
  std::error_code ec;
  std::vector<std::filesystem::path> gpu_dirs;
  for (std::filesystem::directory_iterator it(proc / "driver" / "nvidia" / "gpus", ec), end; !ec && it != end && gpu_dirs.size() < kMaxGpus;
       it.increment(ec))
    gpu_dirs.push_back(it->path());
  std::sort(gpu_dirs.begin(), gpu_dirs.end());  // PCI bus order
  for (const auto& dir : gpu_dirs) {
    const std::string model = first_value(read_bounded(dir / "information"), "Model", ':');
    env.gpus.push_back(model.empty() ? "NVIDIA GPU " + dir.filename().string() : model);
  }

  env.os = unquote(first_value(read_bounded(root / "etc" / "os-release"), "PRETTY_NAME", '='));
  env.kernel = trim(read_bounded(proc / "sys" / "kernel" / "osrelease"));
  env.build = build_info();
  return env;
}

std::string environment_json(const Environment& env) {
  return nlohmann::json{{"cpu_model", env.cpu_model},
                        {"cpu_isa", env.cpu_isa},
                        {"cores", env.cores},
                        {"ram_bytes", env.ram_bytes},
                        {"gpus", env.gpus},
                        {"gpu_driver", env.gpu_driver},
                        {"os", env.os},
                        {"kernel", env.kernel},
                        {"compiler", env.build.compiler},
                        {"build_type", env.build.build_type},
                        {"git_commit", env.build.git_commit}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // /proc text need not be UTF-8
}

std::string host_fingerprint(const Environment& env) {
  // Not the host name: CI machines get fresh names, and one name may move to other hardware. The usable CPUs
  // (this process's affinity, e.g. a container's limit) decide the speed, not the host's core count.
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
  const double gib = static_cast<double>(env.ram_bytes) / (1024.0 * 1024.0 * 1024.0);
  return "cpu=" + (env.cpu_model.empty() ? std::string("unknown") : env.cpu_model) +
         "; isa=" + (env.cpu_isa.empty() ? std::string("unknown") : env.cpu_isa) + "; cpus=" + std::to_string(cpus) +
         "; mem=" + std::to_string(static_cast<int64_t>(std::lround(gib))) + "GiB";
}

std::string host_fingerprint() { return host_fingerprint(probe_environment()); }

}  // namespace lmlab
