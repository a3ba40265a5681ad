// The lab's records beside runs and samples: the runtimes of an `lmlab compare` run and the checks of an
// `lmlab regression` run (one row per check: expected, got, pass).
#include <fmt/format.h>

#include "lmlab/error.h"
#include "store_impl.h"

namespace lmlab {

using results_detail::Statement;

namespace results_detail {
void require_run(const ResultsStore::Impl& impl, int64_t run, const char* what) {
  Statement check(impl.db, impl.path, "SELECT count(*) FROM runs WHERE id = ?1");
  check.bind(1, run);
  check.step();
  if (check.int_col(0) == 0)
    throw Error(ErrorKind::invalid_input, results_where(impl.path), fmt::format("cannot {} run {}: no such run", what, run));
}
}  // namespace results_detail

void ResultsStore::add_runtime(int64_t run, const RuntimeInfo& r) {
  results_detail::require_run(*impl_, run, "add a runtime to");
  Statement st(impl_->db, impl_->path,
               "INSERT INTO runtimes (run_id, name, kind, target, version) VALUES (?1, ?2, ?3, ?4, ?5)");
  st.bind(1, run);
  st.bind(2, r.name);
  st.bind(3, r.kind);
  st.bind(4, r.target);
  st.bind(5, r.version);
  st.step();
}

std::vector<RuntimeInfo> ResultsStore::runtimes(int64_t run) const {
  Statement st(impl_->db, impl_->path,
               "SELECT name, kind, target, version FROM runtimes WHERE run_id = ?1 ORDER BY rowid");
  st.bind(1, run);
  std::vector<RuntimeInfo> out;
  while (st.step()) out.push_back({st.text_col(0), st.text_col(1), st.text_col(2), st.text_col(3)});
  return out;
}

void ResultsStore::add_regression_check(int64_t run, const RegressionCheck& c) {
  results_detail::require_run(*impl_, run, "add a regression check to");
  Statement st(impl_->db, impl_->path,
               "INSERT INTO regression_checks (run_id, model, step, check_name, expected, got, pass) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  st.bind(1, run);
  st.bind(2, c.model);
  st.bind(3, c.step);
  st.bind(4, c.check);
  st.bind(5, c.expected);
  st.bind(6, c.got);
  st.bind(7, int64_t{c.pass ? 1 : 0});
  st.step();
}

std::vector<RegressionCheck> ResultsStore::regression_checks(int64_t run) const {
  Statement st(impl_->db, impl_->path,
               "SELECT model, step, check_name, expected, got, pass FROM regression_checks WHERE run_id = ?1 "
               "ORDER BY id");
  st.bind(1, run);
  std::vector<RegressionCheck> out;
  while (st.step())
    out.push_back({st.text_col(0), st.text_col(1), st.text_col(2), st.text_col(3), st.text_col(4), st.int_col(5) != 0});
  return out;
}

std::optional<int64_t> ResultsStore::latest_regression_run() const {
  Statement st(impl_->db, impl_->path, "SELECT max(run_id) FROM regression_checks");
  if (!st.step() || st.is_null(0)) return std::nullopt;
  return st.int_col(0);
}

}  // namespace lmlab
