// An `lmlab serve` subprocess for the lab's serve mode and the regression suite: started on an ephemeral port
// (--port 0; the port is read from its "serving on" line, printed once the model has loaded), its stderr drained in the background (the last
// lines kept for error messages), stopped with SIGTERM (SIGKILL after a grace period) when destroyed.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "http_client.h"

namespace lmlab::harness_detail {

class ServeProcess {
 public:
  // Runs `exe serve --host 127.0.0.1 --port 0 --model model_dir args...`. Throws Error(io) naming the command
  // and the server's last stderr lines when it exits or does not listen within timeout_s.
  ServeProcess(const std::filesystem::path& exe, const std::filesystem::path& model_dir,
               const std::vector<std::string>& args, int timeout_s = 120);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  const HttpTarget& target() const { return target_; }
  pid_t pid() const { return pid_; }
  std::string stderr_tail() const;  // the server's last stderr output (a few KiB)
  std::string command() const;

 private:
  void stop();
  struct Drain;
  pid_t pid_ = -1;
  HttpTarget target_;
  std::vector<std::string> argv_;
  std::unique_ptr<Drain> drain_;
};

}  // namespace lmlab::harness_detail
