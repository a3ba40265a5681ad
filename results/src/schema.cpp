// Schema and migrations of the results database.
//
// The version lives in PRAGMA user_version and the database is marked as lmlab's with PRAGMA application_id
// ('lmlb'). Migration i takes version i-1 to version i; a new database is created by running every migration
// from 0, so creation and upgrade share one path. All pending migrations run in a single IMMEDIATE
// transaction: they all apply or none do. Migrations only add (tables, columns with defaults); they never
// drop or rewrite data.
#include <fmt/format.h>

#include <array>

#include "db.h"

namespace lmlab::results_detail {
namespace {

constexpr int64_t kApplicationId = 0x6C6D6C62;  // "lmlb"

// kMigrations[i] takes the schema from version i to version i+1.
constexpr std::array<const char*, kResultsSchemaVersion> kMigrations = {
    // v0 -> v1: runs and raw samples.
    R"sql(
CREATE TABLE runs (
  id           INTEGER PRIMARY KEY,
  started_at   TEXT NOT NULL,
  host         TEXT NOT NULL DEFAULT '',
  scenario     TEXT NOT NULL DEFAULT '',
  model        TEXT NOT NULL DEFAULT '',
  model_bytes  INTEGER NOT NULL DEFAULT 0,
  engine_config TEXT NOT NULL DEFAULT '{}',
  notes        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE samples (
  id                INTEGER PRIMARY KEY,
  run_id            INTEGER NOT NULL REFERENCES runs(id),
  config            TEXT NOT NULL,
  context_tokens    INTEGER NOT NULL,
  repetition        INTEGER NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  prompt_ns         INTEGER NOT NULL,
  decode_tokens     INTEGER NOT NULL,
  decode_ns         INTEGER NOT NULL,
  ttft_ns           INTEGER NOT NULL,
  peak_memory_bytes INTEGER NOT NULL,
  kv_cache_bytes    INTEGER NOT NULL,
  gpu_memory_bytes  INTEGER,
  error             TEXT
);
CREATE INDEX samples_run ON samples(run_id, config, context_tokens);
)sql",
    // v1 -> v2: the commit a run was built from, and SSD bytes read per sample (expert streaming).
    R"sql(
ALTER TABLE runs ADD COLUMN git_commit TEXT NOT NULL DEFAULT '';
ALTER TABLE samples ADD COLUMN ssd_bytes_read INTEGER NOT NULL DEFAULT 0;
)sql",
    // v2 -> v3 (the regression gate): the host fingerprint (absolute times compare only on equal ones), the greedy
    // tokens and decode-only SSD bytes of each sample, and per-config perplexity evaluations.
    R"sql(
ALTER TABLE runs ADD COLUMN host_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE samples ADD COLUMN decode_ssd_bytes_read INTEGER NOT NULL DEFAULT 0;
ALTER TABLE samples ADD COLUMN output_tokens TEXT NOT NULL DEFAULT '';
CREATE TABLE evaluations (
  id       INTEGER PRIMARY KEY,
  run_id   INTEGER NOT NULL REFERENCES runs(id),
  config   TEXT NOT NULL,
  tokens   INTEGER NOT NULL,
  nll_sum  REAL NOT NULL,
  error    TEXT
);
)sql",
    // v3 -> v4: whether a run finished (runs written before say 'unrecorded'), chunk arrival times of HTTP
    // samples, the runtimes of `lmlab compare` runs, and the checks of `lmlab regression` runs.
    R"sql(
ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'unrecorded';
ALTER TABLE samples ADD COLUMN chunk_ns TEXT;
CREATE TABLE runtimes (
  run_id  INTEGER NOT NULL REFERENCES runs(id),
  name    TEXT NOT NULL,
  kind    TEXT NOT NULL,
  target  TEXT NOT NULL,
  version TEXT NOT NULL,
  PRIMARY KEY (run_id, name)
);
CREATE TABLE regression_checks (
  id         INTEGER PRIMARY KEY,
  run_id     INTEGER NOT NULL REFERENCES runs(id),
  model      TEXT NOT NULL,
  step       TEXT NOT NULL,
  check_name TEXT NOT NULL,
  expected   TEXT NOT NULL,
  got        TEXT NOT NULL,
  pass       INTEGER NOT NULL
);
CREATE INDEX regression_checks_run ON regression_checks(run_id);
)sql",
    // v4 -> v5: the machine and build a run was measured on; quality per config in the evaluations table (one row
    // per config and held-out sequence, with the KL divergence from the reference config when measured).
    R"sql(
ALTER TABLE runs ADD COLUMN environment TEXT NOT NULL DEFAULT '{}';
ALTER TABLE evaluations ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evaluations ADD COLUMN kl_sum REAL;
ALTER TABLE evaluations ADD COLUMN reference_config TEXT NOT NULL DEFAULT '';
CREATE INDEX evaluations_run ON evaluations(run_id, config);
)sql",
    // v5 -> v6: the drive's random-read bandwidth probed beside each expert-streaming sample (0: not probed).
    R"sql(
ALTER TABLE samples ADD COLUMN drive_read_bps REAL NOT NULL DEFAULT 0;
)sql",
};

bool has_table(sqlite3* db, const std::string& path, const std::string& name) {
  Statement st(db, path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1");
  st.bind(1, name);
  st.step();
  return st.int_col(0) > 0;
}

// Throws unless the database is empty (new, when `may_create`) or an lmlab database whose version this code
// can handle.
void check_identity(sqlite3* db, const std::string& path, int64_t version, bool may_create) {
  const int64_t app_id = query_int(db, path, "PRAGMA application_id");
  const int64_t objects = query_int(db, path, "SELECT count(*) FROM sqlite_master");
  if (version == 0 && app_id == 0) {
    if (objects == 0 && may_create) return;  // empty: a new database
    if (objects == 0)
      throw Error(ErrorKind::invalid_input, results_where(path),
                  "not an lmlab results database (an empty file or empty SQLite database); refusing to write into it");
    throw Error(ErrorKind::invalid_input, results_where(path),
                fmt::format("not an lmlab results database (it has {} unrelated schema objects and schema version 0; "
                            "this lmlab writes schema version {}); refusing to modify it",
                            objects, kResultsSchemaVersion));
  }
  if (app_id != kApplicationId) {
    throw Error(ErrorKind::invalid_input, results_where(path),
                fmt::format("not an lmlab results database (application_id {:#x}, schema version {}; this lmlab "
                            "writes schema version {}); refusing to modify it",
                            app_id, version, kResultsSchemaVersion));
  }
  if (version > kResultsSchemaVersion) {
    throw Error(ErrorKind::unsupported, results_where(path),
                fmt::format("schema version {} is newer than this lmlab understands (up to version {}); use a newer "
                            "lmlab or another database file (the file was left unchanged)",
                            version, kResultsSchemaVersion));
  }
  if (version < 1 || !has_table(db, path, "runs") || !has_table(db, path, "samples")) {
    throw Error(ErrorKind::invalid_input, results_where(path),
                fmt::format("marked as lmlab's with schema version {} but its runs/samples tables are missing (this "
                            "lmlab writes schema version {}); refusing to modify it",
                            version, kResultsSchemaVersion));
  }
}

}  // namespace

int ensure_schema(sqlite3* db, const std::string& path, bool may_create) {
  // Read-only check first (also where a non-SQLite file is detected: SQLite reads the header lazily).
  const int64_t found = query_int(db, path, "PRAGMA user_version");
  check_identity(db, path, found, may_create);
  if (found == kResultsSchemaVersion) return static_cast<int>(found);

  exec(db, path, "BEGIN IMMEDIATE");
  try {
    // Another process may have migrated between the check and the lock: re-read under the lock.
    const int64_t version = query_int(db, path, "PRAGMA user_version");
    check_identity(db, path, version, may_create);
    if (version == 0) exec(db, path, fmt::format("PRAGMA application_id = {}", kApplicationId));
    for (int64_t v = version; v < kResultsSchemaVersion; ++v) {
      try {
        exec(db, path, kMigrations[static_cast<size_t>(v)]);
      } catch (const Error& e) {
        throw Error(e.kind(), e.where(), fmt::format("{} (while migrating schema version {} to {})", e.message(), v, v + 1));
      }
    }
    exec(db, path, fmt::format("PRAGMA user_version = {}", kResultsSchemaVersion));
    exec(db, path, "COMMIT");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  return static_cast<int>(found);
}

}  // namespace lmlab::results_detail
