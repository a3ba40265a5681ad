// scripts/run_benchmark.sh driven as a user would, through stdin (and through its environment variables), with
// the real lmlab executable and a real SQLite file: profile a fixture, list, write the markdown report with its
// charts, choose the regression suite (it must run `lmlab regression`), gate, make a synth model, and end cleanly
// on an unknown choice and at the end of input.
#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>

#include "fixtures.h"
#include "shell.h"
#include "lmlab/results.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

struct Menu {
  fs::path dir = test::fresh_temp_dir("menu");
  fs::path db = dir / "lab.db";
  ~Menu() { fs::remove_all(dir); }

  // Runs the menu with `input` on stdin and `env` (NAME=value ...) set; returns the exit status, fills `out`
  // with stdout and stderr together.
  int run(const std::string& input, const std::string& env, std::string& out) const {
    const fs::path in = dir / "stdin.txt";
    std::ofstream(in) << input;
    const std::string cmd = "cd '" LMLAB_SOURCE_DIR "' && env LMLAB_BIN='" LMLAB_CLI_PATH "' LMLAB_DB='" + db.string() +
                            "' LMLAB_FIXTURES='" + test::fixtures_dir().string() + "' LMLAB_SYNTH_DIR='" + (dir / "synth").string() +
                            "' " + env + " bash scripts/run_benchmark.sh < '" + in.string() + "' 2>&1";
    return test::run_shell(cmd, &out);
  }
};

TEST(Menu, ProfileListAndReportThroughStdin) {
  Menu m;
  std::string out;
  const fs::path reports = m.dir / "reports";
  // 1 profile: model, scenario, contexts, reps, configs; 5 list; 6 report: run, format, folder; q.
  const std::string input = "1\ncoder-dense\nscenarios/ci-smoke.json\n16,32\n1\nvanilla,turbo\n5\n6\n0\nmd\n" + reports.string() + "\nq\n";
  ASSERT_EQ(m.run(input, "", out), 0) << out;
  EXPECT_NE(out.find("configuration scoreboard"), std::string::npos) << out;
  EXPECT_NE(out.find("TurboQuant"), std::string::npos);
  const auto runs = ResultsStore::open(m.db.string()).runs();
  ASSERT_EQ(runs.size(), 1u) << out;
  EXPECT_EQ(runs[0].model, "coder-dense");
  EXPECT_EQ(ResultsStore::open(m.db.string()).samples(runs[0].id).size(), 4u);  // 2 configs x 2 contexts x 1 rep
  EXPECT_NE(out.find("    1  " + runs[0].started_at), std::string::npos) << "the list shows the run:\n" << out;
  size_t md = 0, svg = 0;
  for (const auto& e : fs::directory_iterator(reports)) {
    md += e.path().extension() == ".md";
    svg += e.path().extension() == ".svg";
  }
  EXPECT_EQ(md, 1u);
  EXPECT_EQ(svg, 4u);
}

TEST(Menu, ChoosingTheRegressionSuiteRunsLmlabRegression) {
  Menu m;
  std::string out;
  // The scenario and URL questions answered with their defaults (a fresh lmlab serve).
  EXPECT_EQ(m.run("2\n\n\nq\n", "", out), 0);
  EXPECT_NE(out.find("+ " LMLAB_CLI_PATH " regression scenarios/regression.json --db " + m.db.string()), std::string::npos) << out;
  // Whatever the suite's verdict, the menu says it: a failure by its exit status, naming the subcommand.
  const bool ok = out.find("(exit status") == std::string::npos;
  if (!ok) EXPECT_NE(out.find("lmlab regression failed"), std::string::npos) << out;
}

TEST(Menu, EveryChoiceCanComeFromTheEnvironment) {
  Menu m;
  std::string out;
  const fs::path synth = m.dir / "synth-llama";
  ASSERT_EQ(m.run("", "LMLAB_ACTION=synth LMLAB_SYNTH_PRESET=llama-3-8b LMLAB_SYNTH_SCALE=0.02 LMLAB_SYNTH_BITS=4 LMLAB_SYNTH_OUT=" +
                          synth.string(), out), 0) << out;
  EXPECT_TRUE(fs::is_regular_file(synth / "config.json")) << out;
  EXPECT_NE(out.find("preset (llama-3-8b"), std::string::npos);
  EXPECT_NE(out.find("(from $LMLAB_SYNTH_PRESET)"), std::string::npos) << "the answer is echoed with its source";
  // Profile the synth model without a single line of input.
  ASSERT_EQ(m.run("", "LMLAB_ACTION=profile LMLAB_MODEL=" + synth.string() +
                          " LMLAB_SCENARIO=scenarios/ci-smoke.json LMLAB_CONTEXTS=16 LMLAB_REPS=1 LMLAB_CONFIGS=vanilla", out), 0) << out;
  const auto runs = ResultsStore::open(m.db.string()).runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].model, "synth-llama");
  // Gate the run against itself: passes, and the script's status is gate's.
  EXPECT_EQ(m.run("", "LMLAB_ACTION=gate LMLAB_BASELINE=1 LMLAB_CANDIDATE=1 LMLAB_THRESHOLD=0.05", out), 0) << out;
  EXPECT_EQ(m.run("", "LMLAB_ACTION=gate LMLAB_BASELINE=1 LMLAB_CANDIDATE=7 LMLAB_THRESHOLD=0.05", out), 2) << out;
  EXPECT_EQ(m.run("", "LMLAB_ACTION=synth LMLAB_SYNTH_PRESET=gpt-5 LMLAB_SYNTH_SCALE=1 LMLAB_SYNTH_BITS=4 LMLAB_SYNTH_OUT=x", out), 2);
  EXPECT_NE(out.find("unknown synth preset 'gpt-5'"), std::string::npos) << out;
}

TEST(Menu, UnknownChoiceAndEndOfInputEndCleanly) {
  Menu m;
  std::string out;
  EXPECT_EQ(m.run("9\n", "", out), 0);
  EXPECT_NE(out.find("unknown choice: 9"), std::string::npos) << out;
  EXPECT_EQ(m.run("1\n", "", out), 0) << "end of input in the middle of a question stops the action and the menu";
  EXPECT_NE(out.find("(end of input)"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(m.db)) << "nothing ran";
}

}  // namespace
}  // namespace lmlab
