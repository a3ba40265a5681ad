// Helpers of the tests that drive real processes (the lmlab executable, the menu script) through /bin/sh:
// a fresh temporary folder, shell quoting, and running a command line for its status and output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace lmlab::test {

// /tmp/lmlab_<tag>_<pid>, emptied.
inline std::filesystem::path fresh_temp_dir(const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() / ("lmlab_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// s as one /bin/sh word, whatever it holds.
inline std::string sh_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command line; returns its exit status (-1 when it did not exit) and its stdout in *out.
inline int run_shell(const std::string& cmd, std::string* out = nullptr) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) text.append(buf, n);
  const int status = ::pclose(pipe);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace lmlab::test
