// The lab's run modes and `lmlab compare` against real processes and real SQLite files: a scenario run through
// lmlab serve subprocesses and against a server URL, lmlab compared with the real llama-server on the same
// model (skipped, visibly, when ../shared/peers is absent or its build cannot run on this CPU), a bench killed
// mid-sweep marked incomplete, and report / gate refusing to write into a file that is not an lmlab database.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "cli_run.h"
#include "fixtures.h"
#include "http_client.h"
#include "lmlab/results.h"
#include "serve_process.h"

extern char** environ;

namespace lmlab {
namespace {

namespace fs = std::filesystem;
using test::run_lmlab;

const std::string kSmoke = std::string(LMLAB_SOURCE_DIR) + "/scenarios/ci-smoke.json";

class LabProcesses : public test::TempDirTest {
 protected:
  void TearDown() override {
    for (pid_t p : children_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    TempDirTest::TearDown();
  }

  pid_t spawn(std::vector<std::string> argv, const fs::path& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    EXPECT_EQ(::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ), 0) << argv[0];
    posix_spawn_file_actions_destroy(&fa);
    if (pid > 0) children_.push_back(pid);
    return pid;
  }
  static int free_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t n = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
    ::close(s);
    return ntohs(a.sin_port);
  }

  std::vector<pid_t> children_;
};

TEST_F(LabProcesses, BenchRunsThroughLmlabServeAndAgainstAUrl) {
  const auto r = run_lmlab("bench " + kSmoke + " --db " + db() + " --mode serve --configs vanilla,turbo --contexts 64 --reps 1 --decode-tokens 8");
  ASSERT_EQ(r.rc, 0) << r.output;
  harness_detail::ServeProcess server(LMLAB_CLI_PATH, test::model_dir("coder-moe"), {});
  const auto u = run_lmlab("bench " + kSmoke + " --db " + db() + " --mode url --url " + server.target().url() +
                           " --contexts 64 --reps 2 --decode-tokens 8");
  ASSERT_EQ(u.rc, 0) << u.output;
  ResultsStore store = ResultsStore::open_existing(db());
  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 2u);
  const auto served = store.samples(runs[0].id), remote = store.samples(runs[1].id);
  ASSERT_EQ(served.size(), 2u);
  EXPECT_EQ(served[0].config, "vanilla");
  EXPECT_EQ(served[1].config, "turbo");
  ASSERT_EQ(remote.size(), 2u);
  for (const auto* set : {&served, &remote})
    for (const Sample& s : *set) {
      EXPECT_FALSE(s.error) << *s.error;
      EXPECT_EQ(s.chunk_ns.size() >= 2 ? s.decode_tokens : -1, 7);  // 8 tokens: the first is in the TTFT
      EXPECT_GT(s.ttft_ns, 0);
      EXPECT_GT(s.peak_memory_bytes, 0) << "lmlab serve's /metrics give the server's peak memory";
    }
  EXPECT_EQ(runs[1].state, "complete");
  EXPECT_NE(runs[1].engine_config_json.find("\"mode\":\"url\""), std::string::npos);
}

TEST_F(LabProcesses, CompareLmlabInProcessServeAndLlamaServerOnTheSameModel) {
  const fs::path peers = test::fixtures_dir().parent_path() / "peers";
  const fs::path server = peers / "bin" / "llama-server", gguf = peers / "gguf" / "coder-moe-bf16.gguf";
  if (!fs::exists(server) || !fs::exists(gguf))
    GTEST_SKIP() << "no llama-server or coder-moe GGUF under " << peers << ": the llama.cpp comparison is skipped";
  const int port = free_port();
  const pid_t pid = spawn({server.string(), "-m", gguf.string(), "--host", "127.0.0.1", "--port", std::to_string(port),
                           "-t", "1", "-tb", "1", "--metrics"},
                          dir_ / "llama.log");
  const harness_detail::HttpTarget target{"127.0.0.1", port};
  bool up = false;
  for (int i = 0; i < 600 && !up; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {  // it exited before it served: say how, not "did not come up"
      std::erase(children_, pid);
      // A peer build for another CPU (e.g. AVX-512 on a host without it) cannot run here at all.
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGILL)
        GTEST_SKIP() << server << " dies of SIGILL on this CPU (built for another instruction set): the llama.cpp "
                     << "comparison is skipped";
      std::ifstream log(dir_ / "llama.log");
      FAIL() << "llama-server exited before serving (status " << status << "):\n" << log.rdbuf();
    }
    up = harness_detail::http_get(target, "/health").has_value();
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(up) << "llama-server did not come up";
  const auto r = run_lmlab("compare " + kSmoke + " --db " + db() + " --format md --contexts 64,512 --reps 2 --decode-tokens 8" +
                           " --runtime lmlab=lmlab --runtime lmlab-serve=serve --runtime llama.cpp=" + target.url());
  ASSERT_EQ(r.rc, 0) << r.output;
  ResultsStore store = ResultsStore::open_existing(db());
  const int64_t run = store.runs().back().id;
  const auto rts = store.runtimes(run);
  ASSERT_EQ(rts.size(), 3u);
  EXPECT_EQ(rts[0].kind, "in-process");
  EXPECT_EQ(rts[1].kind, "serve");
  EXPECT_EQ(rts[2].kind, "url");
  EXPECT_EQ(rts[2].version.rfind("llama.cpp ", 0), 0u) << rts[2].version;
  const auto samples = store.samples(run);
  ASSERT_EQ(samples.size(), 3u * 2 * 2);
  for (const Sample& s : samples) {
    EXPECT_FALSE(s.error) << s.config << ": " << *s.error;
    EXPECT_EQ(s.chunk_ns.size(), 8u) << s.config << ": one chunk per token";
  }
  for (const char* row : {"| lmlab |", "| lmlab-serve |", "| llama.cpp |", "### Context 512 tokens"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
}

TEST_F(LabProcesses, ABenchKilledMidSweepIsMarkedIncomplete) {
  const pid_t pid = spawn({LMLAB_CLI_PATH, "bench", kSmoke, "--db", db(), "--reps", "200", "--configs", "vanilla"}, dir_ / "bench.log");
  bool some = false;
  for (int i = 0; i < 600 && !some; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!fs::exists(db())) continue;
    try {
      ResultsStore store = ResultsStore::open_existing(db());
      const auto runs = store.runs();
      some = !runs.empty() && store.samples(runs.back().id).size() >= 2;
    } catch (const lmlab::Error&) {  // the bench is creating the schema right now
    }
  }
  ASSERT_TRUE(some) << "the bench stored no samples";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  children_.clear();
  const auto list = run_lmlab("report --db " + db() + " --list");
  EXPECT_EQ(list.rc, 0) << list.output;
  EXPECT_NE(list.output.find("INCOMPLETE"), std::string::npos) << list.output;
  EXPECT_EQ(run_lmlab("report --db " + db()).rc, 0);  // what it stored still renders
}

TEST_F(LabProcesses, ReportAndGateNeverWriteIntoAFileThatIsNotAnLmlabDatabase) {
  const fs::path empty = dir_ / "empty.db", text = dir_ / "notes.txt";
  std::ofstream(empty).close();
  std::ofstream(text) << "not a database\n";
  for (const fs::path& f : {empty, text}) {
    const auto before = fs::file_size(f);
    const auto r = run_lmlab("report --db " + f.string());
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find(f.string()), std::string::npos) << r.output;
    EXPECT_NE(run_lmlab("gate --db " + f.string() + " --baseline 1 --candidate 2").rc, 0);
    EXPECT_EQ(fs::file_size(f), before) << f;
  }
}

}  // namespace
}  // namespace lmlab
