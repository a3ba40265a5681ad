// Model directory files that are not what they claim (issue 14 probe findings), each written by this test:
// a named pipe where model.safetensors or config.json should be fails at once instead of blocking forever,
// shard names in model.safetensors.index.json cannot leave the model directory, a tensor whose byte size
// wraps a 64-bit integer to 0 is refused, and a thread the OS refuses is an lmlab::Error, not a crash.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "lmlab/model.h"
#include "lmlab/safetensors.h"
#include "tiny_model.h"
#include "util/thread_pool.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

// Runs `load` on another thread: it must finish (with an Error naming `names`) within 20 s.
void expect_prompt_error(const std::function<void()>& load, const std::string& names, const std::string& says) {
  auto done = std::async(std::launch::async, [&]() -> std::string {
    try {
      load();
    } catch (const Error& e) {
      return e.what();
    }
    return "(loaded)";
  });
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "blocked on " << names;
  const std::string what = done.get();
  EXPECT_NE(what.find(names), std::string::npos) << what;
  EXPECT_NE(what.find(says), std::string::npos) << what;
}

TEST(ModelFiles, ANamedPipeFailsAtOnce) {
  for (const char* file : {"model.safetensors", "config.json", "tokenizer.json"}) {
    test::TinyModel tiny;
    // Replace the file (or the whole weight set) by a FIFO nobody writes to.
    if (std::string(file) == "model.safetensors") {
      for (const auto& e : fs::directory_iterator(tiny.dir()))
        if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
          fs::remove(e.path());
    } else {
      fs::remove(tiny.dir() / file);
    }
    ASSERT_EQ(::mkfifo((tiny.dir() / file).c_str(), 0600), 0) << std::strerror(errno);
    expect_prompt_error([&] { Model::load(tiny.dir()); }, file, "not a regular file");
  }
}

TEST(ModelFiles, ShardPathsStayInsideTheModelDirectory) {
  for (const char* shard : {"../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""}) {
    test::TinyModel tiny;
    const fs::path index = tiny.dir() / "model.safetensors.index.json";
    nlohmann::json j = nlohmann::json::parse(std::ifstream(index));
    j["weight_map"]["model.norm.weight"] = shard;
    std::ofstream(index) << j.dump();
    expect_prompt_error([&] { Model::load(tiny.dir()); }, "model.safetensors.index.json",
                        "not a file inside the model directory");
  }
}

TEST(ModelFiles, ATensorWhoseByteSizeWrapsToZeroIsRefused) {
  // 2^31 x 2^31 f32 = 2^64 bytes: wraps to 0 in uint64_t, which matched data_offsets [0, 0].
  const std::string header = R"({"t":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})";
  const fs::path p = fs::temp_directory_path() / ("lmlab_wrap_" + std::to_string(::getpid()) + ".safetensors");
  {
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
  }
  expect_prompt_error([&] { SafetensorsFile f(p); }, "'t'", "needs");
  fs::remove(p);
}

TEST(ModelFiles, AThreadTheOsRefusesIsAnError) {
  // In a child process (the limit must not touch this one): cap the address space so that thread stacks
  // (8 MiB each) run out, then ask for 256 workers. The child reports what happened in its exit code.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(30);  // a deadlock ends as SIGALRM, which the parent reports
    std::ifstream statm("/proc/self/statm");
    uint64_t pages = 0;
    statm >> pages;
    const rlim_t cap = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) + (uint64_t{64} << 20);
    const rlimit lim{cap, cap};
    ::setrlimit(RLIMIT_AS, &lim);
    int code = 2;  // all threads started: the cap did not bite
    try {
      ThreadPool pool(256);
    } catch (const Error& e) {
      code = (e.kind() == ErrorKind::out_of_memory && e.where() == "thread pool") ? 0 : 3;
    } catch (...) {
      code = 4;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: no failure provoked, 3: wrong error, 4: not an lmlab::Error";
}

}  // namespace
}  // namespace lmlab
