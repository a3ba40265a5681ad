// The environment recorded with a run and the CLI around it, against real processes and a real SQLite file:
// probe_environment() on a fake /proc tree (with an NVIDIA driver) and on this machine; `lmlab bench` run from a
// directory whose name is a shell command (it must not run: the commit is compiled in, git is never called);
// `lmlab report` creating its --out-dir, writing the charts beside the markdown, and plain text off a terminal
// or under NO_COLOR (a pseudo-terminal from script(1) stands in for a user's terminal).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "kernels/cpu/isa.h"
#include "shell.h"
#include "lmlab/cpu_kernels.h"
#include "lmlab/harness.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

fs::path temp_dir(const std::string& tag) { return test::fresh_temp_dir("env_" + tag); }
std::string quoted(const std::string& s) { return test::sh_quoted(s); }
int run(const std::string& cmd, std::string* out = nullptr) { return test::run_shell(cmd, out); }

TEST(Environment, ReadsAFakeProcTreeWithAnNvidiaDriver) {
  const fs::path root = temp_dir("fakeroot");
  std::string cpuinfo;
  for (int i = 0; i < 3; ++i)
    cpuinfo += "processor\t: " + std::to_string(i) + "\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\n";
  write(root / "proc/cpuinfo", cpuinfo);
  write(root / "proc/meminfo", "MemTotal:       2113163264 kB\nMemFree:        1000 kB\n");
  // The driver's files as read on the H200 device machine (open kernel module 580).
  write(root / "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \n"
        "GCC version:  gcc version 15.3.0 (GCC) \n");
  write(root / "proc/driver/nvidia/gpus/0000:1b:00.0/information",
        "Model: \t\t NVIDIA H200\nIRQ:   \t\t 41\nGPU UUID: \t GPU-24c2daa5-3f15-b9e8-f57f-0ef959a9cc44\n"
        "Bus Location: \t 0000:00:06.0\nGPU Firmware: \t 580.159.04\nGPU Excluded:\t No\n");
  write(root / "proc/driver/nvidia/gpus/0000:09:00.0/information", "Model: \t\t NVIDIA H100 80GB HBM3\n");
  write(root / "etc/os-release", "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n");
  write(root / "proc/sys/kernel/osrelease", "6.8.0-45-generic\n");
  const Environment env = probe_environment(root);
  EXPECT_EQ(env.cpu_model, "Intel(R) Xeon(R) Platinum 8480+");
  EXPECT_EQ(env.cores, 3);
  EXPECT_EQ(env.ram_bytes, int64_t{2113163264} * 1024);
  EXPECT_EQ(env.gpu_driver, "580.159.04");
  EXPECT_EQ(env.gpus, (std::vector<std::string>{"NVIDIA H100 80GB HBM3", "NVIDIA H200"}));  // PCI bus order
  EXPECT_EQ(env.os, "Ubuntu 24.04.1 LTS");
  EXPECT_EQ(env.kernel, "6.8.0-45-generic");
  EXPECT_EQ(env.build.git_commit, build_info().git_commit);
  const auto j = nlohmann::json::parse(environment_json(env));
  EXPECT_EQ(j.at("gpus").size(), 2u);
  EXPECT_EQ(j.at("git_commit"), build_info().git_commit);
  // The proprietary module's wording.
  write(root / "proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n");
  EXPECT_EQ(probe_environment(root).gpu_driver, "550.54.14");
  fs::remove_all(root);
}

// The CPU kernels' ISA is the engine's own choice in this process (forced lower here as LMLAB_ISA would): a VM of one
// model name may offer AVX2 only (the seventeenth session's dev VM did: its TurboQuant greedy tokens differed from an
// AVX-512 baseline's), and the host fingerprint and the recorded JSON name it.
TEST(Environment, CpuIsaIsTheKernelsAndIsInTheFingerprint) {
  const std::string best = cpu_kernels_isa();
  for (const char* isa : {"scalar", best.c_str()}) {
    ASSERT_TRUE(kernels::cpu::force_isa(isa)) << isa;
    const Environment env = probe_environment();
    EXPECT_EQ(env.cpu_isa, isa);
    EXPECT_NE(host_fingerprint(env).find(std::string("; isa=") + isa + "; cpus="), std::string::npos)
        << host_fingerprint(env);
    EXPECT_EQ(nlohmann::json::parse(environment_json(env)).at("cpu_isa"), isa);
  }
  ASSERT_TRUE(kernels::cpu::force_isa(nullptr));  // back to the default
  EXPECT_EQ(cpu_kernels_isa(), best);
}

TEST(Environment, MissingOrGarbageFilesLeaveFieldsEmptyAndReadsAreBounded) {
  const fs::path root = temp_dir("garbage");
  EXPECT_EQ(probe_environment(root).cpu_model, "");  // nothing there at all
  // 3 MB of binary garbage with no newline as cpuinfo, non-UTF-8 bytes in os-release, a non-numeric MemTotal.
  write(root / "proc/cpuinfo", std::string(3 << 20, '\xff'));
  write(root / "proc/meminfo", "MemTotal: lots\n");
  write(root / "etc/os-release", "PRETTY_NAME=\"\xc3\x28 broken\"\n");
  const Environment env = probe_environment(root);
  EXPECT_EQ(env.cpu_model, "");
  EXPECT_GT(env.cores, 0) << "falls back to the scheduler's count";
  EXPECT_EQ(env.ram_bytes, 0);
  EXPECT_TRUE(env.gpus.empty());
  EXPECT_TRUE(nlohmann::json::accept(environment_json(env))) << "invalid UTF-8 is replaced, the JSON stays valid";
  fs::remove_all(root);
}

// Seeded mutations of real-looking files (byte flips, truncations, inserted separators and NULs): the probe
// never throws or crashes and its JSON always parses.
TEST(Environment, FuzzedProcFilesNeverBreakTheProbe) {
  const fs::path root = temp_dir("fuzz");
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n\nprocessor\t: 1\n"},
      {"proc/meminfo", "MemTotal:       24681012 kB\n"},
      {"proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22\n"},
      {"proc/driver/nvidia/gpus/0000:01:00.0/information", "Model: \t\t NVIDIA H200\n"},
      {"etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"},
      {"proc/sys/kernel/osrelease", "6.1.0-18-amd64\n"}};
  std::mt19937_64 rng(12);
  const std::string specials = ":=\n\t\"'.0123456789 \0\xff";
  for (int iter = 0; iter < 200; ++iter) {
    for (const auto& [file, seed] : seeds) {
      std::string text = seed;
      for (int k = static_cast<int>(rng() % 6); k > 0 && !text.empty(); --k) {
        const size_t at = rng() % text.size();
        switch (rng() % 4) {
          case 0: text[at] = static_cast<char>(rng()); break;
          case 1: text.resize(at); break;
          case 2: text.insert(at, 1, specials[rng() % specials.size()]); break;
          default: text.insert(at, text.substr(0, rng() % (text.size() - at + 1))); break;
        }
      }
      write(root / file, text);
    }
    Environment env;
    ASSERT_NO_THROW(env = probe_environment(root)) << "iteration " << iter;
    ASSERT_TRUE(nlohmann::json::accept(environment_json(env))) << "iteration " << iter;
    EXPECT_GE(env.ram_bytes, 0);
  }
  fs::remove_all(root);
}

TEST(Environment, ThisMachineHasACpuAndTheBinaryItsCompiledInCommit) {
  const Environment env = probe_environment();
  EXPECT_FALSE(env.cpu_model.empty());
  EXPECT_GT(env.cores, 0);
  EXPECT_GT(env.ram_bytes, 0);
  EXPECT_FALSE(build_info().git_commit.empty());
  EXPECT_FALSE(build_info().compiler.empty());
}

// The old `bench` ran `git -C '<cwd>' describe` through a shell: a working directory named like this ran the
// command inside it. Now nothing is run, and the commit recorded is the one compiled into the binary.
TEST(BenchCli, AWorkingDirectoryNamedLikeAShellCommandRunsNothing) {
  const fs::path base = temp_dir("inject");
  const fs::path evil = base / "x'$(touch ../PWNED)'`touch ../PWNED2`y";
  fs::create_directories(evil);
  const std::string db = (base / "lab.db").string();
  const std::string cmd = "cd " + quoted(evil.string()) + " && " + quoted(LMLAB_CLI_PATH) + " bench " +
                          quoted(std::string(LMLAB_SOURCE_DIR) + "/scenarios/ci-smoke.json") + " --db " + quoted(db) +
                          " --model " + quoted(test::model_dir("coder-dense").string()) +
                          " --contexts 16,32 --reps 1 --decode-tokens 2 --configs vanilla 2>" + quoted((base / "stderr").string());
  std::string out;
  ASSERT_EQ(run(cmd, &out), 0);
  EXPECT_FALSE(fs::exists(base / "PWNED"));
  EXPECT_FALSE(fs::exists(base / "PWNED2"));
  // Progress on stderr: each sample's line with the time left, the last with the time taken.
  std::ifstream err_in(base / "stderr");
  const std::string err((std::istreambuf_iterator<char>(err_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(err.find("[1/2] ETA "), std::string::npos) << err;
  EXPECT_NE(err.find(" done vanilla"), std::string::npos) << err;
  const auto runs = ResultsStore::open(db).runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].git_commit, build_info().git_commit);
  const auto env = nlohmann::json::parse(runs[0].environment_json);
  EXPECT_EQ(env.at("git_commit"), build_info().git_commit);
  EXPECT_EQ(env.at("cores"), probe_environment().cores);
  fs::remove_all(base);
}

TEST(ReportCli, CreatesOutDirWritesChartsBesideAndColorsOnlyOnATerminalWithoutNoColor) {
  const fs::path base = temp_dir("report");
  const std::string db = (base / "lab.db").string();
  {
    ResultsStore store = ResultsStore::open(db);
    RunInfo info;
    info.host = "h";
    info.environment_json = environment_json(probe_environment());
    const int64_t id = store.begin_run(info);
    Sample s;
    s.config = "turbo";
    s.context_tokens = 512;
    s.prompt_tokens = 512;
    s.prompt_ns = 1'000'000;
    s.decode_tokens = 8;
    s.decode_ns = 100'000'000;
    store.add_sample(id, s);
  }
  const fs::path out_dir = base / "new" / "nested";
  const std::string lmlab = quoted(LMLAB_CLI_PATH);
  ASSERT_EQ(run(lmlab + " report --db " + quoted(db) + " --format md --out-dir " + quoted(out_dir.string()) + " 2>&1"), 0);
  std::ifstream md_in(out_dir / "profiling_results_h.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  for (const char* kind : {"decode", "ttft", "memory", "ssd"}) {
    const std::string chart = std::string("profiling_results_h_") + kind + ".svg";
    EXPECT_TRUE(fs::is_regular_file(out_dir / chart)) << chart;
    EXPECT_NE(md.find("](" + chart + ")"), std::string::npos) << chart << " is referenced";
  }
  EXPECT_NE(md.find("| CPU | "), std::string::npos);
  EXPECT_NE(md.find("| TurboQuant | 80.0"), std::string::npos) << md;

  std::string text;
  const std::string report = lmlab + " report --db " + quoted(db);
  ASSERT_EQ(run(report, &text), 0);
  EXPECT_EQ(text.find('\033'), std::string::npos) << "stdout is a pipe: plain text";
  EXPECT_NE(text.find("TurboQuant"), std::string::npos);
  ASSERT_EQ(run(report + " --color", &text), 0);
  EXPECT_NE(text.find('\033'), std::string::npos);
  // script(1) gives the command a pseudo-terminal as stdout.
  const std::string on_tty = "script -qec " + quoted(report) + " /dev/null";
  ASSERT_EQ(run("env -u NO_COLOR " + on_tty, &text), 0);
  EXPECT_NE(text.find('\033'), std::string::npos) << "a terminal gets colors";
  ASSERT_EQ(run("NO_COLOR=1 " + on_tty, &text), 0);
  EXPECT_EQ(text.find('\033'), std::string::npos) << "NO_COLOR turns them off:\n" << text;
  ASSERT_EQ(run("env -u NO_COLOR script -qec " + quoted(report + " --no-color") + " /dev/null", &text), 0);
  EXPECT_EQ(text.find('\033'), std::string::npos);
  fs::remove_all(base);
}

}  // namespace
}  // namespace lmlab
