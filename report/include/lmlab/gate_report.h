// Renderers of a regression-gate verdict (results' GateReport): markdown for CI logs, JSON for tools.
#pragma once

#include <string>

#include "lmlab/gate.h"

namespace lmlab {

// A verdict line first (PASS / REGRESSION naming metric, config, context, change and p / CANNOT COMPARE with the
// reasons), then the two runs, the notes and one table row per comparison.
std::string render_gate_markdown(const GateReport& report);

// {"status": "pass"|"regression"|"cannot_compare", "exit_code", "cannot_compare": [...], "notes": [...],
//  "baseline": {...}, "candidate": {...}, "rows": [...]}.
std::string render_gate_json(const GateReport& report);

}  // namespace lmlab
