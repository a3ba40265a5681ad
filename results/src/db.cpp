// Thin RAII layer over the SQLite C API: every failure becomes an lmlab::Error naming the file.
#include "db.h"

#include <fmt/format.h>

namespace lmlab::results_detail {

std::string results_where(const std::string& path) { return "results database " + path; }

void throw_sqlite(sqlite3* db, const std::string& path, std::string_view what) {
  const int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  const char* msg = db ? sqlite3_errmsg(db) : "out of memory";
  if ((code & 0xff) == SQLITE_NOTADB) {
    throw Error(ErrorKind::invalid_input, results_where(path),
                fmt::format("not a SQLite database ({}) while {}; refusing to modify it (this lmlab writes schema "
                            "version {})",
                            msg, what, kResultsSchemaVersion));
  }
  throw Error(ErrorKind::io, results_where(path), fmt::format("{} failed: {} (SQLite error {})", what, msg, code));
}

void exec(sqlite3* db, const std::string& path, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);  // sqlite3_errmsg(db) holds the same text
    throw_sqlite(db, path, fmt::format("executing \"{}\"", sql.substr(0, 60)));
  }
}

Statement::Statement(sqlite3* db, const std::string& path, std::string_view sql) : db_(db), path_(path) {
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK) {
    throw_sqlite(db, path, fmt::format("preparing \"{}\"", sql.substr(0, 60)));
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) throw_sqlite(db_, path_, "binding a value");
}

void Statement::bind(int index, const std::string& value) {
  if (sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT) !=
      SQLITE_OK) {
    throw_sqlite(db_, path_, "binding a value");
  }
}

void Statement::bind(int index, const std::optional<int64_t>& value) {
  if (value) return bind(index, *value);
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) throw_sqlite(db_, path_, "binding a value");
}

void Statement::bind(int index, const std::optional<std::string>& value) {
  if (value) return bind(index, *value);
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) throw_sqlite(db_, path_, "binding a value");
}

void Statement::bind_real(int index, double value) {
  if (sqlite3_bind_double(stmt_, index, value) != SQLITE_OK) throw_sqlite(db_, path_, "binding a value");
}

void Statement::bind_real(int index, const std::optional<double>& value) {
  if (value) return bind_real(index, *value);
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) throw_sqlite(db_, path_, "binding a value");
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw_sqlite(db_, path_, fmt::format("running \"{}\"", std::string_view(sqlite3_sql(stmt_)).substr(0, 60)));
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::int_col(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Statement::text_col(int col) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return text ? std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

double Statement::real_col(int col) const { return sqlite3_column_double(stmt_, col); }

bool Statement::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

int64_t query_int(sqlite3* db, const std::string& path, const std::string& sql) {
  Statement st(db, path, sql);
  if (!st.step()) throw_sqlite(db, path, fmt::format("\"{}\" returned no row", sql));
  return st.int_col(0);
}

}  // namespace lmlab::results_detail
