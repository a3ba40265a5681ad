#!/usr/bin/env bash
# Interactive menu over the lab (like SwiftLM's run_benchmark.sh): run a scenario, list runs, show or write a
# report, gate a candidate run against a baseline. Expects a build (scripts/setup.sh). Database: $LMLAB_DB or
# results/lmlab.db; fixtures: $LMLAB_FIXTURES or ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
LMLAB=build/cli/lmlab
DB="${LMLAB_DB:-results/lmlab.db}"
FIX="${LMLAB_FIXTURES:-../shared/fixtures}"
[ -x "$LMLAB" ] || { echo "no $LMLAB: run scripts/setup.sh first" >&2; exit 1; }

ask() { local prompt="$1" default="$2" answer; read -r -p "$prompt [$default]: " answer; echo "${answer:-$default}"; }

bench() {
  local scenario model contexts reps args=()
  scenario=$(ask "scenario file" "scenarios/default.json")
  model=$(ask "model directory" "$FIX/models/coder-moe-sparse-4bit")
  contexts=$(ask "contexts (comma-separated, empty = the scenario's)" "")
  reps=$(ask "repetitions (empty = the scenario's)" "")
  [ -n "$contexts" ] && args+=(--contexts "$contexts")
  [ -n "$reps" ] && args+=(--reps "$reps")
  local run
  run=$("$LMLAB" bench "$scenario" --db "$DB" --model "$model" "${args[@]}") || return 0
  "$LMLAB" report --db "$DB" --run "$run" --format ansi
}

while true; do
  echo
  echo "lmlab lab menu (database $DB)"
  echo "  1) run a scenario          4) write the markdown report (profiling_results_<host>.md)"
  echo "  2) list runs               5) export a run as CSV or JSON"
  echo "  3) show a run (ANSI)       6) gate a candidate run against a baseline"
  echo "  q) quit"
  read -r -p "> " choice || exit 0
  case "$choice" in
    1) bench ;;
    2) "$LMLAB" report --db "$DB" --list || true ;;
    3) "$LMLAB" report --db "$DB" --run "$(ask "run id (0 = latest)" 0)" --format ansi || true ;;
    4) "$LMLAB" report --db "$DB" --run "$(ask "run id (0 = latest)" 0)" --format md --out-dir . || true ;;
    5) fmt=$(ask "format (csv | json)" csv)
       run=$(ask "run id (0 = latest)" 0)
       "$LMLAB" report --db "$DB" --run "$run" --format "$fmt" --out "$(ask "output file" "run-$run.$fmt")" || true ;;
    6) "$LMLAB" gate --db "$DB" --baseline "$(ask "baseline run id" 1)" --candidate "$(ask "candidate run id" 2)" \
         --threshold "$(ask "threshold" 0.05)" || echo "(gate exit code $?)" ;;
    q|Q) exit 0 ;;
    *) echo "unknown choice: $choice" ;;
  esac
done
