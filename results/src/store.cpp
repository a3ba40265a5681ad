// ResultsStore: opening the database file, inserting runs and raw samples, and reading them back.
// Inserts use cached prepared statements; a batch of samples is one transaction.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "store_impl.h"

namespace lmlab {

using results_detail::Statement;

namespace {

constexpr const char* kRunColumns =
    "id, started_at, host, scenario, model, model_bytes, engine_config, git_commit, notes, host_fingerprint, state, "
    "environment";

// Token ids as space-separated decimal text (readable in the sqlite3 shell).
std::string tokens_text(const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += (out.empty() ? "" : " ") + std::to_string(id);
  return out;
}

std::vector<int32_t> tokens_of(const std::string& text, const std::string& path) {
  std::vector<int32_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t used = 0;
    try {
      out.push_back(static_cast<int32_t>(std::stoi(text.substr(pos), &used)));
    } catch (const std::exception&) {
      throw Error(ErrorKind::invalid_input, results_detail::results_where(path),
                  fmt::format("samples.output_tokens is not a list of ids: '{}'", text.substr(0, 80)));
    }
    pos += used;
    while (pos < text.size() && text[pos] == ' ') ++pos;
  }
  return out;
}

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
  r.host_fingerprint = st.text_col(9);
  r.state = st.text_col(10);
  r.environment_json = st.text_col(11);
  return r;
}

// Chunk arrival times travel as a JSON array of integers (NULL when there are none).
std::optional<std::string> chunk_ns_text(const std::vector<int64_t>& chunk_ns) {
  if (chunk_ns.empty()) return std::nullopt;
  return nlohmann::json(chunk_ns).dump();
}

std::vector<int64_t> chunk_ns_of(const std::string& text, const std::string& path) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::vector<int64_t> out;
  if (!j.is_array())
    throw Error(ErrorKind::invalid_input, results_detail::results_where(path), "a sample's chunk_ns is not a JSON array");
  for (const auto& v : j) {
    if (!v.is_number_integer())
      throw Error(ErrorKind::invalid_input, results_detail::results_where(path), "a sample's chunk_ns holds a non-integer");
    out.push_back(v.get<int64_t>());
  }
  return out;
}

ResultsStore open_store(const std::string& path, bool create) {
  if (!create && !std::filesystem::is_regular_file(path))
    throw Error(ErrorKind::invalid_input, results_detail::results_where(path), "no such file (run lmlab bench first)");
  auto impl = std::make_unique<ResultsStore::Impl>();
  impl->path = path;
  const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  const int rc = sqlite3_open_v2(path.c_str(), &impl->db, flags, nullptr);
  if (rc != SQLITE_OK) results_detail::throw_sqlite(impl->db, path, "opening");
  sqlite3_extended_result_codes(impl->db, 1);
  sqlite3_busy_timeout(impl->db, 5000);  // several bench processes may share one database
  results_detail::exec(impl->db, path, "PRAGMA foreign_keys = ON");
  results_detail::ensure_schema(impl->db, impl->path, create);
  impl->version = kResultsSchemaVersion;
  return ResultsStore::from_impl(std::move(impl));
}

}  // namespace

ResultsStore ResultsStore::from_impl(std::unique_ptr<Impl> impl) { return ResultsStore(std::move(impl)); }
ResultsStore ResultsStore::open(const std::string& path) { return open_store(path, true); }
ResultsStore ResultsStore::open_existing(const std::string& path) { return open_store(path, false); }

ResultsStore::ResultsStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResultsStore::ResultsStore(ResultsStore&&) noexcept = default;
ResultsStore& ResultsStore::operator=(ResultsStore&&) noexcept = default;
ResultsStore::~ResultsStore() = default;

const std::string& ResultsStore::path() const { return impl_->path; }
int ResultsStore::schema_version() const { return impl_->version; }

int64_t ResultsStore::begin_run(const RunInfo& info) {
  if (!nlohmann::json::accept(info.engine_config_json)) {
    throw Error(ErrorKind::invalid_input, results_detail::results_where(impl_->path),
                fmt::format("run's engine_config is not valid JSON: {}", info.engine_config_json.substr(0, 80)));
  }
  if (!nlohmann::json::accept(info.environment_json)) {
    throw Error(ErrorKind::invalid_input, results_detail::results_where(impl_->path),
                fmt::format("run's environment is not valid JSON: {}", info.environment_json.substr(0, 80)));
  }
  if (!impl_->insert_run) {
    impl_->insert_run = std::make_unique<Statement>(
        impl_->db, impl_->path,
        "INSERT INTO runs (started_at, host, scenario, model, model_bytes, engine_config, git_commit, notes, "
        "host_fingerprint, state, environment) "
        "VALUES (COALESCE(NULLIF(?1, ''), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
        "'running', ?10)");
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
  st.bind(9, info.host_fingerprint);
  st.bind(10, info.environment_json);
  st.step();
  return sqlite3_last_insert_rowid(impl_->db);
}

void ResultsStore::add_sample(int64_t run, const Sample& sample) { add_samples(run, {sample}); }

void ResultsStore::end_run(int64_t run) {
  results_detail::require_run(*impl_, run, "mark as complete");
  Statement st(impl_->db, impl_->path, "UPDATE runs SET state = 'complete' WHERE id = ?1");
  st.bind(1, run);
  st.step();
}

void ResultsStore::add_samples(int64_t run, const std::vector<Sample>& samples) {
  results_detail::require_run(*impl_, run, "add samples to");
  if (!impl_->insert_sample) {
    impl_->insert_sample = std::make_unique<Statement>(
        impl_->db, impl_->path,
        "INSERT INTO samples (run_id, config, context_tokens, repetition, prompt_tokens, prompt_ns, "
        "decode_tokens, decode_ns, ttft_ns, peak_memory_bytes, kv_cache_bytes, ssd_bytes_read, "
        "gpu_memory_bytes, error, decode_ssd_bytes_read, output_tokens, chunk_ns, drive_read_bps) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)");
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
      st.bind(15, s.decode_ssd_bytes_read);
      st.bind(16, tokens_text(s.output_tokens));
      st.bind(17, chunk_ns_text(s.chunk_ns));
      st.bind_real(18, s.drive_read_bps);
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
               "ttft_ns, peak_memory_bytes, kv_cache_bytes, ssd_bytes_read, gpu_memory_bytes, error, "
               "decode_ssd_bytes_read, output_tokens, chunk_ns, drive_read_bps FROM samples WHERE run_id = ?1 ORDER BY id");
  st.bind(1, run);
  std::vector<Sample> out;
  while (st.step()) {
    Sample s;
    s.run_id = run;
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
    s.decode_ssd_bytes_read = st.int_col(13);
    s.output_tokens = tokens_of(st.text_col(14), impl_->path);
    if (!st.is_null(15)) s.chunk_ns = chunk_ns_of(st.text_col(15), impl_->path);
    s.drive_read_bps = st.real_col(16);
    out.push_back(std::move(s));
  }
  return out;
}

void ResultsStore::add_evaluation(int64_t run, const Evaluation& e) {
  results_detail::require_run(*impl_, run, "add an evaluation to");
  if (!e.error && e.tokens <= 0)
    throw Error(ErrorKind::invalid_input, results_detail::results_where(impl_->path),
                fmt::format("evaluation of config '{}' has {} tokens", e.config, e.tokens));
  Statement st(impl_->db, impl_->path,
               "INSERT INTO evaluations (run_id, config, tokens, nll_sum, error, sequence, kl_sum, reference_config) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  st.bind(1, run);
  st.bind(2, e.config);
  st.bind(3, e.tokens);
  st.bind_real(4, e.nll_sum);
  st.bind(5, e.error);
  st.bind(6, e.sequence);
  st.bind_real(7, e.kl_sum);
  st.bind(8, e.reference_config);
  st.step();
}

std::vector<Evaluation> ResultsStore::evaluations(int64_t run) const {
  Statement st(impl_->db, impl_->path,
               "SELECT config, tokens, nll_sum, error, sequence, kl_sum, reference_config FROM evaluations "
               "WHERE run_id = ?1 ORDER BY id");
  st.bind(1, run);
  std::vector<Evaluation> out;
  while (st.step()) {
    Evaluation e;
    e.config = st.text_col(0);
    e.tokens = st.int_col(1);
    e.nll_sum = st.real_col(2);
    if (!st.is_null(3)) e.error = st.text_col(3);
    e.sequence = st.int_col(4);
    if (!st.is_null(5)) e.kl_sum = st.real_col(5);
    e.reference_config = st.text_col(6);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace lmlab
