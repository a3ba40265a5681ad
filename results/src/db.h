// Internal: a thin RAII layer over the SQLite C API shared by schema.cpp and store.cpp.
// Every failure becomes an lmlab::Error naming the database file (results_where) and SQLite's own message.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lmlab/error.h"
#include "lmlab/results.h"

namespace lmlab::results_detail {

// "results database PATH": the `where` of every results error.
std::string results_where(const std::string& path);

[[noreturn]] void throw_sqlite(sqlite3* db, const std::string& path, std::string_view what);

// Runs one or more statements without results (schema DDL, BEGIN/COMMIT).
void exec(sqlite3* db, const std::string& path, const std::string& sql);

// A prepared statement; bind indices are 1-based as in SQLite.
class Statement {
public:
  Statement(sqlite3* db, const std::string& path, std::string_view sql);
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  void bind(int index, int64_t value);
  void bind(int index, const std::string& value);
  void bind(int index, const std::optional<int64_t>& value);
  void bind(int index, const std::optional<std::string>& value);
  void bind_real(int index, double value);
  void bind_real(int index, const std::optional<double>& value);  // NULL when unset

  bool step();   // true when a row is available, false when done
  void reset();  // ready to bind and step again

  int64_t int_col(int col) const;
  std::string text_col(int col) const;
  double real_col(int col) const;
  bool is_null(int col) const;

private:
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Single-value query helper (e.g. PRAGMA user_version).
int64_t query_int(sqlite3* db, const std::string& path, const std::string& sql);

// Brings the database to kResultsSchemaVersion: creates the schema in an empty database, migrates an older
// lmlab database in one transaction, or throws for a newer or foreign database (and, unless `may_create`,
// for an empty one). Returns the version found before any migration (0 for a new database).
int ensure_schema(sqlite3* db, const std::string& path, bool may_create = true);

}  // namespace lmlab::results_detail
