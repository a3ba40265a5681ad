// Internal: the state behind ResultsStore (one SQLite connection and its cached insert statements), shared by
// store.cpp (runs, samples) and lab_records.cpp (runtimes, regression checks).
#pragma once

#include <memory>
#include <string>

#include "db.h"

namespace lmlab {

struct ResultsStore::Impl {
  std::string path;
  sqlite3* db = nullptr;
  int version = 0;
  std::unique_ptr<results_detail::Statement> insert_run, insert_sample;

  ~Impl() {
    insert_run.reset();
    insert_sample.reset();
    sqlite3_close(db);
  }
};

namespace results_detail {
// Throws lmlab::Error (invalid_input) unless `run` is a run of the database (`what` says what was being added).
void require_run(const ResultsStore::Impl& impl, int64_t run, const char* what);
}  // namespace results_detail

}  // namespace lmlab
