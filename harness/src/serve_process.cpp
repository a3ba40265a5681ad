#include "serve_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mutex>
#include <regex>
#include <thread>

#include "lmlab/error.h"

extern char** environ;

namespace lmlab::harness_detail {

namespace {
constexpr size_t kTailBytes = 4096;
}

// Reads the child's stderr until it closes, keeping the last kTailBytes.
struct ServeProcess::Drain {
  int fd = -1;
  mutable std::mutex mu;
  std::string tail;
  std::thread thread;

  void keep(const char* data, size_t n) {
    std::lock_guard lock(mu);
    tail.append(data, n);
    if (tail.size() > kTailBytes) tail.erase(0, tail.size() - kTailBytes);
  }
  void run() {
    char buf[1024];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) keep(buf, static_cast<size_t>(n));
  }
  std::string get() const {
    std::lock_guard lock(mu);
    return tail;
  }
  ~Drain() {
    if (thread.joinable()) thread.join();
    if (fd >= 0) ::close(fd);
  }
};

ServeProcess::ServeProcess(const std::filesystem::path& exe, const std::filesystem::path& model_dir,
                           const std::vector<std::string>& args, int timeout_s)
    : drain_(std::make_unique<Drain>()) {
  argv_ = {exe.string(), "serve", "--host", "127.0.0.1", "--port", "0", "--model", model_dir.string()};
  argv_.insert(argv_.end(), args.begin(), args.end());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(ErrorKind::io, "lmlab serve", "cannot create a pipe for its stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  std::vector<char*> cargv;
  for (auto& a : argv_) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  drain_->fd = fds[0];
  if (rc != 0) {
    pid_ = -1;
    throw Error(ErrorKind::io, command(), fmt::format("cannot start: {}", std::strerror(rc)));
  }
  // Read stderr until the "serving on http://HOST:PORT" line (the model has loaded; "listening on" comes first,
  // while it loads and requests get 503), the child's exit, or the timeout.
  const std::regex listening(R"(serving on http://[^:\s]+:(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string seen;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    std::smatch m;
    if (std::regex_search(seen, m, listening)) {
      target_ = {"127.0.0.1", std::stoi(m[1].str())};
      break;
    }
    pollfd p{drain_->fd, POLLIN, 0};
    char buf[1024];
    const ssize_t n = left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) > 0
                          ? ::read(drain_->fd, buf, sizeof buf) : -2;
    if (n > 0) {
      seen.append(buf, static_cast<size_t>(n));
      drain_->keep(buf, static_cast<size_t>(n));
      if (seen.size() > (1 << 20)) seen.erase(0, seen.size() - kTailBytes);
      continue;
    }
    const std::string why = n == -2 ? fmt::format("was not ready within {} s", timeout_s) : "exited before it was ready";
    const std::string tail = drain_->get();
    stop();  // the destructor does not run for a constructor that throws
    throw Error(ErrorKind::io, command(), fmt::format("{}; its stderr: {}", why, tail.empty() ? "(empty)" : tail));
  }
  drain_->thread = std::thread([d = drain_.get()] { d->run(); });
}

ServeProcess::~ServeProcess() { stop(); }

void ServeProcess::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {  // 10 s for running generations to finish
      gone = ::waitpid(pid_, &status, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  drain_.reset();
}

std::string ServeProcess::stderr_tail() const { return drain_ ? drain_->get() : std::string(); }
std::string ServeProcess::command() const { return fmt::format("{}", fmt::join(argv_, " ")); }

}  // namespace lmlab::harness_detail
