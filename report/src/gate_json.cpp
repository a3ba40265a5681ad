// The gate's verdict as JSON: the same content as the markdown, for tools.
#include <nlohmann/json.hpp>

#include "lmlab/gate_report.h"

namespace lmlab {
namespace {

using json = nlohmann::json;

json run_json(const RunInfo& r) {
  return {{"id", r.id},       {"scenario", r.scenario},           {"model", r.model},
          {"model_bytes", r.model_bytes}, {"git_commit", r.git_commit}, {"started_at", r.started_at},
          {"host", r.host},   {"host_fingerprint", r.host_fingerprint}};
}

const char* status_name(GateReport::Status s) {
  switch (s) {
    case GateReport::Status::pass: return "pass";
    case GateReport::Status::regression: return "regression";
    case GateReport::Status::cannot_compare: return "cannot_compare";
  }
  return "?";
}

const char* verdict_name(GateVerdict v) {
  switch (v) {
    case GateVerdict::ok: return "ok";
    case GateVerdict::regression: return "regression";
    case GateVerdict::skipped: return "skipped";
  }
  return "?";
}

}  // namespace

std::string render_gate_json(const GateReport& rep) {
  json rows = json::array();
  for (const GateRow& r : rep.rows) {
    rows.push_back({{"metric", r.metric}, {"config", r.config}, {"context", r.context}, {"baseline", r.baseline},
                    {"candidate", r.candidate}, {"n_baseline", r.n_baseline}, {"n_candidate", r.n_candidate},
                    {"change", r.change}, {"threshold", r.threshold},
                    {"p", r.p_value ? json(*r.p_value) : json(nullptr)}, {"verdict", verdict_name(r.verdict)},
                    {"note", r.note}});
  }
  const json out = {{"status", status_name(rep.status)}, {"exit_code", gate_exit_code(rep)},
                    {"cannot_compare", rep.cannot_compare}, {"notes", rep.notes},
                    {"baseline", run_json(rep.baseline)}, {"candidate", run_json(rep.candidate)},
                    {"alpha", rep.policy.alpha}, {"noise_k", rep.policy.noise_k}, {"rows", rows}};
  return out.dump(2) + "\n";
}

}  // namespace lmlab
