// scripts/merge_lab_db.py on databases written by the real `lmlab bench` (ci-smoke in process: one config, a
// context of 64, one repetition, 2 decode tokens; well under a second each): SRC's runs are appended to DST under
// new ids with their samples, evaluations, regression checks and runtimes, DST's own runs untouched; refused,
// DST unchanged byte for byte, when the schemas' columns differ and when a row fails mid-copy (one transaction).
// CI runs no Python test runner, so this is the script's test; skipped, visibly, without python3 on PATH.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cli_run.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;
using test::run_command;
using test::run_lmlab;

const std::string kScript = std::string(LMLAB_SOURCE_DIR) + "/scripts/merge_lab_db.py";
const std::string kSmoke = std::string(LMLAB_SOURCE_DIR) + "/scenarios/ci-smoke.json";

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs one SQL statement on a database with Python's sqlite3 (the tests link no SQLite of their own).
int sql(const fs::path& db, const std::string& statement) {
  return run_command("python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); "
                     "c.commit()' '" + db.string() + "' \"" + statement + "\"").rc;
}

class MergeLabDb : public test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (std::system("command -v python3 > /dev/null 2>&1") != 0)
      GTEST_SKIP() << "python3 is not on PATH: scripts/merge_lab_db.py is not tested";
  }
  // One run of `lmlab bench` appended to `db`.
  void bench(const fs::path& db, const std::string& config) {
    const auto r = run_lmlab("bench " + kSmoke + " --db " + db.string() + " --configs " + config +
                             " --contexts 64 --reps 1 --decode-tokens 2");
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  test::CliResult merge(const fs::path& src, const fs::path& dst) {
    return run_command("python3 " + kScript + " " + src.string() + " " + dst.string());
  }
};

void expect_same_samples(const std::vector<Sample>& got, const std::vector<Sample>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].config, want[i].config);
    EXPECT_EQ(got[i].context_tokens, want[i].context_tokens);
    EXPECT_EQ(got[i].decode_ns, want[i].decode_ns);
    EXPECT_EQ(got[i].ttft_ns, want[i].ttft_ns);
    EXPECT_EQ(got[i].peak_memory_bytes, want[i].peak_memory_bytes);
    EXPECT_EQ(got[i].output_tokens, want[i].output_tokens);
  }
}

TEST_F(MergeLabDb, AppendsTheRunsOfSrcUnderNewIdsWithTheirRows) {
  const fs::path src = dir_ / "src.db", dst = dir_ / "dst.db";
  bench(dst, "vanilla");
  bench(src, "turbo");
  bench(src, "vanilla");
  {
    ResultsStore store = ResultsStore::open(src.string());
    store.add_evaluation(2, {"vanilla", 63, 150.5, std::nullopt, 0, std::nullopt, ""});
    store.add_runtime(2, {"lmlab", "in-process", "model", "abc123"});
    store.add_regression_check(2, {"coder-moe", "1 long", "answer", "a", "a", true});
  }

  const auto r = merge(src, dst);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("1 -> 2\n2 -> 3\n"), std::string::npos) << r.output;

  ResultsStore from = ResultsStore::open_existing(src.string());
  ResultsStore to = ResultsStore::open_existing(dst.string());
  const auto runs = to.runs();
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].id, 1);
  ASSERT_EQ(to.samples(1).size(), 1u);
  EXPECT_EQ(to.samples(1)[0].config, "vanilla");  // DST's own run is left as it was
  for (int64_t old_id : {1, 2}) {
    const int64_t new_id = old_id + 1;
    const RunInfo was = *from.run(old_id), is = *to.run(new_id);
    EXPECT_EQ(is.started_at, was.started_at);
    EXPECT_EQ(is.git_commit, was.git_commit);
    EXPECT_EQ(is.state, was.state);
    EXPECT_EQ(is.environment_json, was.environment_json);
    expect_same_samples(to.samples(new_id), from.samples(old_id));
  }
  EXPECT_EQ(to.samples(2)[0].config, "turbo");
  ASSERT_EQ(to.evaluations(3).size(), 1u);
  EXPECT_EQ(to.evaluations(3)[0].nll_sum, 150.5);
  ASSERT_EQ(to.runtimes(3).size(), 1u);
  EXPECT_EQ(to.runtimes(3)[0].version, "abc123");
  ASSERT_EQ(to.regression_checks(3).size(), 1u);
  EXPECT_EQ(to.regression_checks(3)[0].step, "1 long");
  EXPECT_TRUE(to.evaluations(2).empty());
  EXPECT_TRUE(to.runtimes(2).empty());
}

TEST_F(MergeLabDb, RefusesDifferentColumnsAndRollsBackAFailureMidCopy) {
  const fs::path src = dir_ / "src.db", dst = dir_ / "dst.db", wider = dir_ / "wider.db", orphan = dir_ / "orphan.db";
  bench(dst, "vanilla");
  bench(src, "vanilla");
  fs::copy_file(src, wider);
  ASSERT_EQ(sql(wider, "ALTER TABLE samples ADD COLUMN power_watts REAL"), 0);
  fs::copy_file(src, orphan);  // a sample naming a run the file lacks: found after the runs were inserted
  ASSERT_EQ(sql(orphan, "UPDATE samples SET run_id = 99"), 0);
  const std::string before = read_bytes(dst);

  auto r = merge(wider, dst);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("table samples: columns only in SRC: power_watts"), std::string::npos) << r.output;
  EXPECT_EQ(read_bytes(dst), before);

  r = merge(orphan, dst);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("names run 99"), std::string::npos) << r.output;
  EXPECT_EQ(read_bytes(dst), before);

  r = merge(dst, dst);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("one file"), std::string::npos) << r.output;
  EXPECT_EQ(read_bytes(dst), before);
}

}  // namespace
}  // namespace lmlab
