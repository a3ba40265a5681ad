// Runs the lmlab executable (LMLAB_CLI_PATH), or any command line, as a real process and captures its exit code
// and output; a per-test temporary folder for the databases and files such tests make.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace lmlab::test {

struct CliResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

// A shell command line, stderr with stdout.
inline CliResult run_command(const std::string& command_line) {
  const std::string cmd = command_line + " 2>&1";
  CliResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0;) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CliResult run_lmlab(const std::string& args) { return run_command(std::string(LMLAB_CLI_PATH) + " " + args); }

// dir_: a fresh folder named after the test (and this process), removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("lmlab_") + info->test_suite_name() + "_" + info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string db() const { return (dir_ / "lab.db").string(); }

  std::filesystem::path dir_;
};

}  // namespace lmlab::test
