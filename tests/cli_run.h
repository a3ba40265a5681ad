// Runs the lmlab executable (LMLAB_CLI_PATH) as a real process and captures its exit code and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace lmlab::test {

struct CliResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

inline CliResult run_lmlab(const std::string& args) {
  const std::string cmd = std::string(LMLAB_CLI_PATH) + " " + args + " 2>&1";
  CliResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0;) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace lmlab::test
