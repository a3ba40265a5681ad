// ResultsStore: opening the database file, inserting runs and raw samples, and reading them back.
// Inserts use cached prepared statements; a batch of samples is one transaction.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "db.h"

namespace lmlab {

using results_detail::Statement;

struct ResultsStore::Impl {
  std::string path;
  sqlite3* db = nullptr;
  int version = 0;
  std::unique_ptr<Statement> insert_run, insert_sample;

  ~Impl() {
    insert_run.reset();
    insert_sample.reset();
    sqlite3_close(db);
  }
};

namespace {

constexpr const char* kRunColumns =
    "id, started_at, host, scenario, model, model_bytes, engine_config, git_commit, notes, environment";

RunInfo read_run(const Statement& st) {
  RunInfo r;
  r.id = st.int_col(0);
  r.started_at = st.text_col(1);
  r.host = st.text_col(2);
  r.scenario = st.text_col(3);
  r.model = st.text_col(4);
  r.model_bytes = st.int_col(5);
  r.engine_config_json = st.text_col(6);
  r.git_commit = st.text_col(7);
  r.notes = st.text_col(8);
  r.environment_json = st.text_col(9);
  return r;
}

}  // namespace

ResultsStore ResultsStore::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  const int rc = sqlite3_open_v2(path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) results_detail::throw_sqlite(impl->db, path, "opening");
  sqlite3_extended_result_codes(impl->db, 1);
  sqlite3_busy_timeout(impl->db, 5000);  // several bench processes may share one database
  results_detail::exec(impl->db, path, "PRAGMA foreign_keys = ON");
  results_detail::ensure_schema(impl->db, impl->path);
  impl->version = kResultsSchemaVersion;
  return ResultsStore(std::move(impl));
}

ResultsStore::ResultsStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResultsStore::ResultsStore(ResultsStore&&) noexcept = default;
ResultsStore& ResultsStore::operator=(ResultsStore&&) noexcept = default;
ResultsStore::~ResultsStore() = default;

const std::string& ResultsStore::path() const { return impl_->path; }
int ResultsStore::schema_version() const { return impl_->version; }

int64_t ResultsStore::begin_run(const RunInfo& info) {
  if (!nlohmann::json::accept(info.engine_config_json)) {
    throw ResultsError(fmt::format("results database {}: run's engine_config is not valid JSON: {}", impl_->path,
                                   info.engine_config_json.substr(0, 80)));
  }
  if (!nlohmann::json::accept(info.environment_json)) {
    throw ResultsError(fmt::format("results database {}: run's environment is not valid JSON: {}", impl_->path,
                                   info.environment_json.substr(0, 80)));
  }
  if (!impl_->insert_run) {
    impl_->insert_run = std::make_unique<Statement>(
        impl_->db, impl_->path,
        "INSERT INTO runs (started_at, host, scenario, model, model_bytes, engine_config, git_commit, notes, "
        "environment) VALUES (COALESCE(NULLIF(?1, ''), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), ?2, ?3, ?4, ?5, "
        "?6, ?7, ?8, ?9)");
  }
  Statement& st = *impl_->insert_run;
  st.reset();
  st.bind(1, info.started_at);
  st.bind(2, info.host);
  st.bind(3, info.scenario);
  st.bind(4, info.model);
  st.bind(5, info.model_bytes);
  st.bind(6, info.engine_config_json);
  st.bind(7, info.git_commit);
  st.bind(8, info.notes);
  st.bind(9, info.environment_json);
  st.step();
  return sqlite3_last_insert_rowid(impl_->db);
}

void ResultsStore::add_sample(int64_t run, const Sample& sample) { add_samples(run, {sample}); }

namespace {

void require_run(sqlite3* db, const std::string& path, int64_t run, const char* what) {
  Statement check(db, path, "SELECT count(*) FROM runs WHERE id = ?1");
  check.bind(1, run);
  check.step();
  if (check.int_col(0) == 0)
    throw ResultsError(fmt::format("results database {}: cannot add {} to run {}: no such run", path, what, run));
}

}  // namespace

void ResultsStore::add_samples(int64_t run, const std::vector<Sample>& samples) {
  require_run(impl_->db, impl_->path, run, "samples");
  if (!impl_->insert_sample) {
    impl_->insert_sample = std::make_unique<Statement>(
        impl_->db, impl_->path,
        "INSERT INTO samples (run_id, config, context_tokens, repetition, prompt_tokens, prompt_ns, "
        "decode_tokens, decode_ns, ttft_ns, peak_memory_bytes, kv_cache_bytes, ssd_bytes_read, "
        "gpu_memory_bytes, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
  }
  Statement& st = *impl_->insert_sample;
  results_detail::exec(impl_->db, impl_->path, "BEGIN IMMEDIATE");
  try {
    for (const Sample& s : samples) {
      st.reset();
      st.bind(1, run);
      st.bind(2, s.config);
      st.bind(3, s.context_tokens);
      st.bind(4, s.repetition);
      st.bind(5, s.prompt_tokens);
      st.bind(6, s.prompt_ns);
      st.bind(7, s.decode_tokens);
      st.bind(8, s.decode_ns);
      st.bind(9, s.ttft_ns);
      st.bind(10, s.peak_memory_bytes);
      st.bind(11, s.kv_cache_bytes);
      st.bind(12, s.ssd_bytes_read);
      st.bind(13, s.gpu_memory_bytes);
      st.bind(14, s.error);
      st.step();
    }
    st.reset();
    results_detail::exec(impl_->db, impl_->path, "COMMIT");
  } catch (...) {
    st.reset();
    sqlite3_exec(impl_->db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<RunInfo> ResultsStore::runs() const {
  Statement st(impl_->db, impl_->path, fmt::format("SELECT {} FROM runs ORDER BY id", kRunColumns));
  std::vector<RunInfo> out;
  while (st.step()) out.push_back(read_run(st));
  return out;
}

std::optional<RunInfo> ResultsStore::run(int64_t id) const {
  Statement st(impl_->db, impl_->path, fmt::format("SELECT {} FROM runs WHERE id = ?1", kRunColumns));
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_run(st);
}

std::vector<Sample> ResultsStore::samples(int64_t run) const {
  Statement st(impl_->db, impl_->path,
               "SELECT config, context_tokens, repetition, prompt_tokens, prompt_ns, decode_tokens, decode_ns, "
               "ttft_ns, peak_memory_bytes, kv_cache_bytes, ssd_bytes_read, gpu_memory_bytes, error "
               "FROM samples WHERE run_id = ?1 ORDER BY id");
  st.bind(1, run);
  std::vector<Sample> out;
  while (st.step()) {
    Sample s;
    s.config = st.text_col(0);
    s.context_tokens = st.int_col(1);
    s.repetition = st.int_col(2);
    s.prompt_tokens = st.int_col(3);
    s.prompt_ns = st.int_col(4);
    s.decode_tokens = st.int_col(5);
    s.decode_ns = st.int_col(6);
    s.ttft_ns = st.int_col(7);
    s.peak_memory_bytes = st.int_col(8);
    s.kv_cache_bytes = st.int_col(9);
    s.ssd_bytes_read = st.int_col(10);
    if (!st.is_null(11)) s.gpu_memory_bytes = st.int_col(11);
    if (!st.is_null(12)) s.error = st.text_col(12);
    out.push_back(std::move(s));
  }
  return out;
}

void ResultsStore::add_quality(int64_t run, const QualitySample& q) {
  require_run(impl_->db, impl_->path, run, "quality");
  if (q.tokens <= 0)
    throw ResultsError(fmt::format("results database {}: quality of config '{}' has {} tokens", impl_->path, q.config, q.tokens));
  Statement st(impl_->db, impl_->path,
               "INSERT INTO quality (run_id, config, sequence, tokens, nll_sum, kl_sum, reference_config) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  st.bind(1, run);
  st.bind(2, q.config);
  st.bind(3, q.sequence);
  st.bind(4, q.tokens);
  st.bind(5, q.nll_sum);
  st.bind(6, q.kl_sum);
  st.bind(7, q.reference_config);
  st.step();
}

std::vector<QualitySample> ResultsStore::quality(int64_t run) const {
  Statement st(impl_->db, impl_->path,
               "SELECT config, sequence, tokens, nll_sum, kl_sum, reference_config FROM quality WHERE run_id = ?1 "
               "ORDER BY id");
  st.bind(1, run);
  std::vector<QualitySample> out;
  while (st.step()) {
    QualitySample q;
    q.config = st.text_col(0);
    q.sequence = st.int_col(1);
    q.tokens = st.int_col(2);
    q.nll_sum = st.double_col(3);
    if (!st.is_null(4)) q.kl_sum = st.double_col(4);
    q.reference_config = st.text_col(5);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace lmlab
