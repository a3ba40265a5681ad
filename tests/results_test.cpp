// Results store: SQLite round trip from disk, schema migration v1 -> v2, refusal of newer or foreign files,
// summary statistics against hand-computed values, and the regression gate's decisions.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <unistd.h>

#include "lmlab/results.h"

namespace fs = std::filesystem;
using lmlab::Error;
using lmlab::ResultsStore;
using lmlab::RunInfo;
using lmlab::Sample;
using lmlab::summarize_quality;

namespace {

// A fresh path in a per-test temporary directory, removed afterwards.
class ResultsTempDir : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("lmlab_results_") + info->test_suite_name() + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs raw SQL on a file with the SQLite C API (to build databases the store did not write).
  static void raw_sql(const std::string& file, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    const std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
  }

  fs::path dir_;
};

Sample make_sample(const std::string& config, int64_t context, int64_t rep, double tok_s) {
  Sample s;
  s.config = config;
  s.context_tokens = context;
  s.repetition = rep;
  s.prompt_tokens = context;
  s.prompt_ns = 1'000'000'000;
  s.decode_tokens = 100;
  s.decode_ns = static_cast<int64_t>(std::llround(100.0 / tok_s * 1e9));
  s.ttft_ns = 50'000'000;
  s.peak_memory_bytes = 1 << 20;
  s.kv_cache_bytes = 1 << 16;
  return s;
}

constexpr int64_t kLmlabApplicationId = 0x6C6D6C62;  // "lmlb", PRAGMA application_id of lmlab databases

}  // namespace

using ResultsStoreTest = ResultsTempDir;

TEST_F(ResultsStoreTest, RoundTripRunsAndSamplesThroughDisk) {
  const std::string file = path("lab.db");
  int64_t run_id = 0;
  Sample a = make_sample("ssd+turbo", 40000, 2, 12.5);
  a.ssd_bytes_read = 123'456'789'012;
  a.gpu_memory_bytes = 80'000'000'000;
  a.drive_read_bps = 2.57e9;
  Sample b = make_sample("vanilla", 512, 0, 30.0);
  b.error = "out of memory at layer 3";
  {
    ResultsStore store = ResultsStore::open(file);
    EXPECT_EQ(store.schema_version(), lmlab::kResultsSchemaVersion);
    RunInfo info;
    info.started_at = "2026-11-26T12:00:00Z";
    info.host = "h100-box";
    info.scenario = "contexts";
    info.model = "coder-moe";
    info.model_bytes = 65'536'000;
    info.engine_config_json = R"({"turbo_kv":true,"ctx_size":40960})";
    info.git_commit = "abc123";
    info.notes = "first";
    info.environment_json = R"({"cpu_model":"Xeon","cores":2})";
    run_id = store.begin_run(info);
    store.add_sample(run_id, a);
    store.add_sample(run_id, b);
    store.add_evaluation(run_id, {"vanilla", 1023, 1474.5, std::nullopt, 0, std::nullopt, "vanilla"});
    store.add_evaluation(run_id, {"turbo", 1023, 1480.25, std::nullopt, 0, 2.5, "vanilla"});
    store.add_evaluation(run_id, {"turbo", 1023, 1476.0, std::nullopt, 1, 0.5, "vanilla"});
    store.add_evaluation(run_id, {"ssd", 0, 0, "model failed to load", 0, std::nullopt, ""});
    EXPECT_THROW(store.add_evaluation(999, {"turbo", 1, 1.0, std::nullopt, 0, 0.0, "vanilla"}), Error);
    EXPECT_THROW(store.add_evaluation(run_id, {"turbo", 0, 1.0, std::nullopt, 0, 0.0, "vanilla"}), Error);
    RunInfo second;
    second.host = "cpu-box";
    const int64_t run2 = store.begin_run(second);
    EXPECT_NE(run2, run_id);
    EXPECT_THROW(store.add_sample(999, a), Error);
    RunInfo bad;
    bad.engine_config_json = "{not json";
    EXPECT_THROW(store.begin_run(bad), Error);
    RunInfo bad_env;
    bad_env.environment_json = "cpu: Xeon";
    EXPECT_THROW(store.begin_run(bad_env), Error);
  }
  ResultsStore store = ResultsStore::open(file);  // reopened from disk
  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].id, run_id);
  EXPECT_EQ(runs[0].started_at, "2026-11-26T12:00:00Z");
  EXPECT_EQ(runs[0].host, "h100-box");
  EXPECT_EQ(runs[0].scenario, "contexts");
  EXPECT_EQ(runs[0].model, "coder-moe");
  EXPECT_EQ(runs[0].model_bytes, 65'536'000);
  EXPECT_EQ(runs[0].engine_config_json, R"({"turbo_kv":true,"ctx_size":40960})");
  EXPECT_EQ(runs[0].git_commit, "abc123");
  EXPECT_EQ(runs[0].notes, "first");
  EXPECT_EQ(runs[0].environment_json, R"({"cpu_model":"Xeon","cores":2})");
  EXPECT_EQ(runs[1].environment_json, "{}");
  const auto quality = store.evaluations(run_id);
  ASSERT_EQ(quality.size(), 4u);
  EXPECT_EQ(quality[3].error, std::optional<std::string>("model failed to load"));
  EXPECT_EQ(quality[0].config, "vanilla");
  EXPECT_FALSE(quality[0].kl_sum.has_value());
  EXPECT_EQ(quality[2].sequence, 1);
  EXPECT_EQ(quality[2].kl_sum, std::optional<double>(0.5));
  EXPECT_EQ(quality[1].nll_sum, 1480.25);
  // Summaries: perplexity = exp(sum nll / sum tokens), KL = sum kl / sum tokens, per config in first-seen order;
  // a failed evaluation has no figures.
  const auto qs = summarize_quality(quality);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].config, "vanilla");
  EXPECT_DOUBLE_EQ(qs[0].perplexity, std::exp(1474.5 / 1023));
  EXPECT_FALSE(qs[0].kl_divergence.has_value());
  EXPECT_EQ(qs[1].tokens, 2046);
  EXPECT_DOUBLE_EQ(qs[1].perplexity, std::exp((1480.25 + 1476.0) / 2046));
  EXPECT_DOUBLE_EQ(*qs[1].kl_divergence, 3.0 / 2046);
  EXPECT_EQ(qs[1].reference_config, "vanilla");
  EXPECT_EQ(runs[1].started_at.size(), 20u) << "empty started_at is filled with the current UTC time";
  ASSERT_TRUE(store.run(run_id).has_value());
  EXPECT_EQ(store.run(run_id)->host, "h100-box");
  EXPECT_FALSE(store.run(12345).has_value());

  const auto got = store.samples(run_id);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].config, "ssd+turbo");
  EXPECT_EQ(got[0].context_tokens, 40000);
  EXPECT_EQ(got[0].repetition, 2);
  EXPECT_EQ(got[0].decode_ns, a.decode_ns);
  EXPECT_EQ(got[0].drive_read_bps, 2.57e9);
  EXPECT_EQ(got[1].drive_read_bps, 0.0);  // not probed
  EXPECT_EQ(got[0].ssd_bytes_read, 123'456'789'012);
  EXPECT_EQ(got[0].gpu_memory_bytes, std::optional<int64_t>(80'000'000'000));
  EXPECT_FALSE(got[0].error.has_value());
  EXPECT_EQ(got[1].config, "vanilla");
  EXPECT_FALSE(got[1].gpu_memory_bytes.has_value());
  EXPECT_EQ(got[1].error, std::optional<std::string>("out of memory at layer 3"));
  EXPECT_TRUE(store.samples(runs[1].id).empty());
}

// Schema v3 exactly as the regression gate's lmlab wrote it (what CI databases hold), with one run, one sample
// and one evaluation: it moves to the current version (through v4 and v5) keeping every gate field.
TEST_F(ResultsStoreTest, MigratesVersion3DatabaseKeepingTheGatesFields) {
  const std::string file = path("v3.db");
  raw_sql(file, "PRAGMA application_id = " + std::to_string(kLmlabApplicationId) + R"sql(;
CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, host TEXT NOT NULL DEFAULT '',
  scenario TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', model_bytes INTEGER NOT NULL DEFAULT 0,
  engine_config TEXT NOT NULL DEFAULT '{}', notes TEXT NOT NULL DEFAULT '');
CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), config TEXT NOT NULL,
  context_tokens INTEGER NOT NULL, repetition INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
  prompt_ns INTEGER NOT NULL, decode_tokens INTEGER NOT NULL, decode_ns INTEGER NOT NULL,
  ttft_ns INTEGER NOT NULL, peak_memory_bytes INTEGER NOT NULL, kv_cache_bytes INTEGER NOT NULL,
  gpu_memory_bytes INTEGER, error TEXT);
CREATE INDEX samples_run ON samples(run_id, config, context_tokens);
ALTER TABLE runs ADD COLUMN git_commit TEXT NOT NULL DEFAULT '';
ALTER TABLE samples ADD COLUMN ssd_bytes_read INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN host_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE samples ADD COLUMN decode_ssd_bytes_read INTEGER NOT NULL DEFAULT 0;
ALTER TABLE samples ADD COLUMN output_tokens TEXT NOT NULL DEFAULT '';
CREATE TABLE evaluations (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
  config TEXT NOT NULL, tokens INTEGER NOT NULL, nll_sum REAL NOT NULL, error TEXT);
INSERT INTO runs (id, started_at, host, scenario, model, model_bytes, engine_config, notes, git_commit, host_fingerprint)
  VALUES (3, '2026-12-01T00:00:00Z', 'ci', 'ci-gate', 'coder-moe', 9, '{}', '', 'abc123', 'cpu=X; cpus=2; mem=8');
INSERT INTO samples (run_id, config, context_tokens, repetition, prompt_tokens, prompt_ns, decode_tokens, decode_ns,
  ttft_ns, peak_memory_bytes, kv_cache_bytes, gpu_memory_bytes, error, ssd_bytes_read, decode_ssd_bytes_read,
  output_tokens) VALUES (3, 'ssd', 256, 0, 256, 10, 16, 20, 30, 40, 50, NULL, NULL, 600, 500, '5 6 7');
INSERT INTO evaluations (run_id, config, tokens, nll_sum, error) VALUES (3, 'ssd', 255, 300.5, NULL);
PRAGMA user_version = 3;
)sql");
  ResultsStore store = ResultsStore::open(file);
  EXPECT_EQ(store.schema_version(), lmlab::kResultsSchemaVersion);
  const auto run = store.run(3);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->host_fingerprint, "cpu=X; cpus=2; mem=8");
  EXPECT_EQ(run->git_commit, "abc123");
  EXPECT_EQ(run->state, "unrecorded");
  const auto samples = store.samples(3);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].decode_ssd_bytes_read, 500);
  EXPECT_EQ(samples[0].output_tokens, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_TRUE(samples[0].chunk_ns.empty());
  EXPECT_EQ(samples[0].drive_read_bps, 0.0);  // v6 column, default: not probed
  const auto evaluations = store.evaluations(3);
  ASSERT_EQ(evaluations.size(), 1u);
  EXPECT_EQ(evaluations[0].tokens, 255);
  EXPECT_EQ(evaluations[0].nll_sum, 300.5);
  EXPECT_EQ(evaluations[0].sequence, 0);  // v5 columns, defaults
  EXPECT_FALSE(evaluations[0].kl_sum.has_value());
  EXPECT_EQ(run->environment_json, "{}");
  // The lab's v4 tables exist and take rows for the old run.
  EXPECT_TRUE(store.regression_checks(3).empty());
  store.add_regression_check(3, {"gemma3", "1 long", "answer", "a", "a", true});
  store.add_runtime(3, {"llama", "url", "http://x", "unknown"});
  EXPECT_EQ(store.regression_checks(3).size(), 1u);
  EXPECT_EQ(store.runtimes(3).size(), 1u);
}

TEST_F(ResultsStoreTest, MigratesVersion1DatabaseKeepingData) {
  const std::string file = path("v1.db");
  // Schema v1 exactly as lmlab wrote it, with one run and one sample.
  raw_sql(file, "PRAGMA application_id = " + std::to_string(kLmlabApplicationId) + R"sql(;
CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, host TEXT NOT NULL DEFAULT '',
  scenario TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', model_bytes INTEGER NOT NULL DEFAULT 0,
  engine_config TEXT NOT NULL DEFAULT '{}', notes TEXT NOT NULL DEFAULT '');
CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), config TEXT NOT NULL,
  context_tokens INTEGER NOT NULL, repetition INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
  prompt_ns INTEGER NOT NULL, decode_tokens INTEGER NOT NULL, decode_ns INTEGER NOT NULL,
  ttft_ns INTEGER NOT NULL, peak_memory_bytes INTEGER NOT NULL, kv_cache_bytes INTEGER NOT NULL,
  gpu_memory_bytes INTEGER, error TEXT);
CREATE INDEX samples_run ON samples(run_id, config, context_tokens);
INSERT INTO runs VALUES (7, '2025-01-02T03:04:05Z', 'old-host', 'smoke', 'llama', 1000, '{"a":1}', 'v1 run');
INSERT INTO samples VALUES (1, 7, 'turbo', 2048, 0, 2048, 111, 64, 222, 333, 444, 555, NULL, NULL);
PRAGMA user_version = 1;
)sql");
  {
    ResultsStore store = ResultsStore::open(file);
    EXPECT_EQ(store.schema_version(), lmlab::kResultsSchemaVersion);
    const auto run = store.run(7);
    ASSERT_TRUE(run.has_value());
    EXPECT_EQ(run->host, "old-host");
    EXPECT_EQ(run->notes, "v1 run");
    EXPECT_EQ(run->engine_config_json, R"({"a":1})");
    EXPECT_EQ(run->git_commit, "");  // new column, default
    EXPECT_EQ(run->host_fingerprint, "");  // v3 column, default
    EXPECT_TRUE(store.evaluations(7).empty());
    EXPECT_EQ(run->state, "unrecorded");  // v4: whether it finished was not recorded before
    EXPECT_EQ(run->environment_json, "{}");  // v5 column, default
    const auto samples = store.samples(7);
    ASSERT_EQ(samples.size(), 1u);
    EXPECT_EQ(samples[0].config, "turbo");
    EXPECT_EQ(samples[0].decode_ns, 222);
    EXPECT_EQ(samples[0].kv_cache_bytes, 555);
    EXPECT_EQ(samples[0].ssd_bytes_read, 0);  // new column, default
    EXPECT_TRUE(samples[0].output_tokens.empty());  // v3 column, default
    EXPECT_EQ(samples[0].decode_ssd_bytes_read, 0);
    Sample s = make_sample("ssd", 2048, 1, 10);
    s.ssd_bytes_read = 42;
    s.output_tokens = {3, 1, 4};
    store.add_sample(7, s);
    EXPECT_EQ(store.samples(7).back().output_tokens, (std::vector<int32_t>{3, 1, 4}));
    store.add_evaluation(7, lmlab::Evaluation{"ssd", 100, 123.25, std::nullopt});
    ASSERT_EQ(store.evaluations(7).size(), 1u);
    EXPECT_EQ(store.evaluations(7)[0].nll_sum, 123.25);
  }
  // On disk: the current version, new columns present, old and new rows readable.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), lmlab::kResultsSchemaVersion);
  sqlite3_finalize(st);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT sum(ssd_bytes_read), count(*) FROM samples", -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 42);
  EXPECT_EQ(sqlite3_column_int64(st, 1), 2);
  sqlite3_finalize(st);
  sqlite3_close(db);
  EXPECT_EQ(ResultsStore::open(file).samples(7).size(), 2u);
}

TEST_F(ResultsStoreTest, KeepsRunStateRuntimesRegressionChecksAndChunkTimes) {
  const std::string file = path("lab.db");
  int64_t run = 0, other = 0;
  {
    ResultsStore store = ResultsStore::open(file);
    run = store.begin_run(RunInfo{});
    other = store.begin_run(RunInfo{});
    Sample s = make_sample("llama.cpp", 512, 0, 20);
    s.chunk_ns = {1'000'000, 3'000'000, 4'000'000};
    store.add_sample(run, s);
    store.add_runtime(run, {"llama.cpp", "url", "http://127.0.0.1:8090", "llama.cpp b1-abc"});
    store.add_regression_check(run, {"gemma3", "4 long again", "prompt_cache_hits", "1", "0", false});
    store.add_regression_check(run, {"gemma3", "4 long again", "answer", "x|y", "x|y", true});
    store.end_run(run);
    EXPECT_THROW(store.end_run(999), lmlab::Error);
    EXPECT_THROW(store.add_regression_check(999, {}), lmlab::Error);
  }
  ResultsStore store = ResultsStore::open_existing(file);
  EXPECT_EQ(store.run(run)->state, "complete");
  EXPECT_EQ(store.run(other)->state, "running");  // never ended: a killed run reads as incomplete
  EXPECT_EQ(store.samples(run)[0].chunk_ns, (std::vector<int64_t>{1'000'000, 3'000'000, 4'000'000}));
  const auto rts = store.runtimes(run);
  ASSERT_EQ(rts.size(), 1u);
  EXPECT_EQ(rts[0].version, "llama.cpp b1-abc");
  const auto checks = store.regression_checks(run);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_FALSE(checks[0].pass);
  EXPECT_EQ(checks[0].got, "0");
  EXPECT_EQ(checks[1].expected, "x|y");
  EXPECT_EQ(store.latest_regression_run(), run);
  // Streaming figures from the chunk times: gaps of 2 and 1 ms.
  const auto streams = lmlab::summarize_streams(store.samples(run));
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_DOUBLE_EQ(streams[0].ttft_ms_median, 50.0);
  EXPECT_DOUBLE_EQ(streams[0].itl_ms_p50, 1.5);
  EXPECT_NEAR(streams[0].decode_tok_s_median, 2 / 0.003, 1e-6);  // 2 chunks after the first in 3 ms
}

TEST_F(ResultsStoreTest, OpenExistingRefusesMissingAndEmptyFilesLeavingThemAlone) {
  EXPECT_THROW(ResultsStore::open_existing(path("none.db")), lmlab::Error);
  EXPECT_FALSE(fs::exists(path("none.db")));
  std::ofstream(path("empty.db")).close();
  EXPECT_THROW(ResultsStore::open_existing(path("empty.db")), lmlab::Error);
  EXPECT_EQ(fs::file_size(path("empty.db")), 0u);
}

TEST_F(ResultsStoreTest, RejectsNewerSchemaVersionWithoutTouchingIt) {
  const std::string file = path("future.db");
  { ResultsStore::open(file).begin_run(RunInfo{}); }
  raw_sql(file, "PRAGMA user_version = 9");
  const auto size_before = fs::file_size(file);
  try {
    ResultsStore::open(file);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("version 9"), std::string::npos) << msg;
    EXPECT_NE(msg.find("version " + std::to_string(lmlab::kResultsSchemaVersion)), std::string::npos) << msg;
    EXPECT_EQ(e.kind(), lmlab::ErrorKind::unsupported);
  }
  EXPECT_EQ(fs::file_size(file), size_before);
  raw_sql(file, "PRAGMA user_version = " + std::to_string(lmlab::kResultsSchemaVersion));
  EXPECT_EQ(ResultsStore::open(file).runs().size(), 1u) << "data survived the refused open";
}

TEST_F(ResultsStoreTest, RejectsFileThatIsNotSqlite) {
  const std::string file = path("notes.txt");
  {
    std::ofstream out(file);
    for (int i = 0; i < 100; ++i) out << "this is a text file, not a database\n";
  }
  const auto size_before = fs::file_size(file);
  try {
    ResultsStore::open(file);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("not a SQLite database"), std::string::npos) << msg;
    EXPECT_EQ(e.kind(), lmlab::ErrorKind::invalid_input);
  }
  EXPECT_EQ(fs::file_size(file), size_before);
}

TEST_F(ResultsStoreTest, RejectsForeignSqliteDatabase) {
  const std::string file = path("other_app.db");
  raw_sql(file, "CREATE TABLE runs (x TEXT); INSERT INTO runs VALUES ('theirs');");
  try {
    ResultsStore::open(file);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("not an lmlab results database"), std::string::npos) << msg;
    EXPECT_EQ(e.kind(), lmlab::ErrorKind::invalid_input);
  }
  // Untouched: still their one table, version 0.
  raw_sql(file, "INSERT INTO runs VALUES ('still theirs');");
  EXPECT_THROW(ResultsStore::open(file), Error);
}

TEST_F(ResultsStoreTest, ReportsUnwritableLocation) {
  const std::string file = path("no/such/dir/lab.db");
  try {
    ResultsStore::open(file);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    EXPECT_EQ(e.kind(), lmlab::ErrorKind::io);
  }
}

TEST(ResultsStatistics, QuantileInterpolatesLinearly) {
  EXPECT_DOUBLE_EQ(lmlab::quantile({3, 1, 2}, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(lmlab::quantile({1, 2, 3, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(lmlab::quantile({10, 20, 30, 40, 50}, 0.1), 14.0);  // rank 0.4
  EXPECT_DOUBLE_EQ(lmlab::quantile({10, 20, 30, 40, 50}, 0.9), 46.0);  // rank 3.6
  EXPECT_TRUE(std::isnan(lmlab::quantile({}, 0.5)));
}

TEST(ResultsStatistics, SummarizeMatchesHandComputedValues) {
  std::vector<Sample> samples;
  // vanilla @ 512: decode tok/s 10, 20, 30, 40, 50 (shuffled), ttft 10..50 ms, ssd 0..400, one error.
  const double rates[] = {30, 10, 50, 20, 40};
  for (int i = 0; i < 5; ++i) {
    Sample s = make_sample("vanilla", 512, i, rates[i]);
    s.ttft_ns = static_cast<int64_t>(rates[i]) * 1'000'000;  // ms equal to the rate, for easy checks
    s.ssd_bytes_read = static_cast<int64_t>(rates[i]) * 10;
    s.peak_memory_bytes = static_cast<int64_t>(rates[i]) * 1000;
    samples.push_back(s);
  }
  Sample failed = make_sample("vanilla", 512, 5, 1000);
  failed.error = "timeout";
  failed.peak_memory_bytes = 1'000'000'000;  // ignored: failed sample
  samples.push_back(failed);
  // ssd @ 40000: 4 samples, 8, 12, 16, 20 tok/s.
  for (int i = 0; i < 4; ++i) samples.push_back(make_sample("ssd", 40000, i, 8 + 4 * i));

  const auto sum = lmlab::summarize(samples);
  ASSERT_EQ(sum.size(), 2u);
  EXPECT_EQ(sum[0].config, "ssd");  // sorted by config, then context
  EXPECT_EQ(sum[0].context, 40000);
  EXPECT_EQ(sum[0].n, 4);
  EXPECT_NEAR(sum[0].decode_tok_s_median, 14.0, 1e-6);
  EXPECT_NEAR(sum[0].decode_tok_s_p10, 9.2, 1e-6);   // rank 0.3: 8 + 0.3*4
  EXPECT_NEAR(sum[0].decode_tok_s_p90, 18.8, 1e-6);  // rank 2.7: 16 + 0.7*4
  EXPECT_NEAR(sum[0].ttft_ms_median, 50.0, 1e-9);

  const auto& v = sum[1];
  EXPECT_EQ(v.config, "vanilla");
  EXPECT_EQ(v.context, 512);
  EXPECT_EQ(v.n, 5);
  EXPECT_EQ(v.errors, 1);
  EXPECT_NEAR(v.decode_tok_s_median, 30.0, 1e-6);
  EXPECT_NEAR(v.decode_tok_s_p10, 14.0, 1e-6);
  EXPECT_NEAR(v.decode_tok_s_p90, 46.0, 1e-6);
  EXPECT_NEAR(v.ttft_ms_median, 30.0, 1e-9);
  EXPECT_EQ(v.peak_memory_bytes_max, 50'000);
  EXPECT_NEAR(v.ssd_bytes_read_median, 300.0, 1e-9);
}

TEST(ResultsStatistics, MannWhitneyPValues) {
  // Complete separation of 10 vs 10: U = 0, z = 49.5 / sqrt(175) = 3.742, p = 1.83e-4.
  std::vector<double> lo, hi;
  for (int i = 0; i < 10; ++i) {
    lo.push_back(i);
    hi.push_back(100 + i);
  }
  EXPECT_NEAR(lmlab::mann_whitney_p(lo, hi), 1.828e-4, 2e-6);
  EXPECT_NEAR(lmlab::mann_whitney_p(hi, lo), 1.828e-4, 2e-6);
  EXPECT_DOUBLE_EQ(lmlab::mann_whitney_p(lo, lo), 1.0);
  EXPECT_DOUBLE_EQ(lmlab::mann_whitney_p({5, 5, 5}, {5, 5}), 1.0);
  EXPECT_DOUBLE_EQ(lmlab::mann_whitney_p({}, lo), 1.0);
}

namespace {

// n samples of decode tok/s around center with +-1.5% deterministic jitter.
std::vector<Sample> noisy_run(const std::string& config, double center, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> jitter(-0.015, 0.015);
  std::vector<Sample> out;
  for (int i = 0; i < n; ++i) out.push_back(make_sample(config, 4096, i, center * (1 + jitter(rng))));
  return out;
}

}  // namespace

TEST(ResultsGate, FlagsClearTwentyPercentRegression) {
  const auto results = lmlab::gate(noisy_run("turbo", 50, 10, 1), noisy_run("turbo", 40, 10, 2), 0.05);
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  EXPECT_TRUE(r.compared);
  EXPECT_EQ(r.n_baseline, 10);
  EXPECT_EQ(r.n_candidate, 10);
  EXPECT_NEAR(r.relative_change, -0.2, 0.03);
  EXPECT_LT(r.p_value, 0.001);
  EXPECT_TRUE(r.regression);
  EXPECT_TRUE(lmlab::any_regression(results));
}

TEST(ResultsGate, IgnoresIdenticalDistributionsAndSmallChanges) {
  const auto base = noisy_run("vanilla", 50, 10, 3);
  const auto same = lmlab::gate(base, base, 0.05);
  ASSERT_EQ(same.size(), 1u);
  EXPECT_NEAR(same[0].relative_change, 0.0, 1e-12);
  EXPECT_FALSE(same[0].regression);

  // 2% slower: likely significant with this little noise, but under the 5% threshold.
  const auto small = lmlab::gate(base, noisy_run("vanilla", 49, 10, 4), 0.05);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_LT(small[0].relative_change, 0.0);
  EXPECT_GT(small[0].relative_change, -0.05);
  EXPECT_FALSE(small[0].regression);

  // Faster is never a regression.
  EXPECT_FALSE(lmlab::any_regression(lmlab::gate(base, noisy_run("vanilla", 70, 10, 5), 0.05)));
}

TEST(ResultsGate, LargeButNoisyOrUnmatchedGroupsAreNotFlagged) {
  // 3 vs 3 fully separated, 20% slower: the U test cannot reach p < 0.05 at this size.
  const auto few = lmlab::gate(noisy_run("ssd", 50, 3, 6), noisy_run("ssd", 40, 3, 7), 0.05);
  ASSERT_EQ(few.size(), 1u);
  EXPECT_LT(few[0].relative_change, -0.15);
  EXPECT_GT(few[0].p_value, 0.05);
  EXPECT_FALSE(few[0].regression);

  const auto unmatched = lmlab::gate(noisy_run("ssd", 50, 10, 8), noisy_run("turbo", 10, 10, 9), 0.05);
  ASSERT_EQ(unmatched.size(), 2u);
  for (const auto& r : unmatched) {
    EXPECT_FALSE(r.compared);
    EXPECT_FALSE(r.regression);
  }
}

// The lab's figures of raw engine samples (results/src/figures.cpp).
TEST(ResultsFigures, RatesPercentilesAndDecodeBench) {
  EXPECT_EQ(lmlab::per_second(10, 2), 5.0);
  EXPECT_EQ(lmlab::per_second(10, 0), 0.0);
  const lmlab::LatencyFigures lat = lmlab::latency_figures({0.004, 0.001, 0.003, 0.002, 0.005});
  EXPECT_DOUBLE_EQ(lat.p50_s, 0.003);
  EXPECT_DOUBLE_EQ(lat.p99_s, 0.004 + 0.96 * 0.001);  // rank 0.99 * 4 = 3.96
  EXPECT_DOUBLE_EQ(lat.max_s, 0.005);
  EXPECT_EQ(lmlab::latency_figures({}).max_s, 0.0);
  // 1000 prompt tokens in 0.5 s; steps of 10, 20, 30, 40 ms: 4 tokens in 0.1 s.
  const lmlab::DecodeBenchFigures f =
      lmlab::decode_bench_figures(1000, 500'000'000, {10'000'000, 20'000'000, 30'000'000, 40'000'000});
  EXPECT_DOUBLE_EQ(f.prefill_tok_s, 2000.0);
  EXPECT_DOUBLE_EQ(f.decode_tok_s, 40.0);
  EXPECT_DOUBLE_EQ(f.step_ms_p50, 25.0);
  EXPECT_DOUBLE_EQ(f.step_ms_p90, 37.0);
}
