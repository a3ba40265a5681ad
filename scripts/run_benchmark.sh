#!/usr/bin/env bash
# Interactive menu over the lab (like SwiftLM's run_benchmark.sh): profile a model (a scenario sweep and its
# report), the prompt-cache / sliding-window regression suite, compare runtimes, gate a run against a baseline,
# list runs and write reports, make a synth model. Expects a build (scripts/setup.sh).
#
# Every question can be answered ahead by an environment variable (then it is not asked, and the answer is
# echoed); set LMLAB_ACTION to run one action without the menu and exit with its status:
#   LMLAB_ACTION      profile | regression | compare | gate | list | report | export | synth
#   LMLAB_BIN         the lmlab executable (build/cli/lmlab)      LMLAB_DB        results database (results/lmlab.db)
#   LMLAB_FIXTURES    fixtures folder (../shared/fixtures)        LMLAB_SYNTH_DIR where synth models go (results/synth)
#   LMLAB_MODEL       a fixture name (coder-moe-sparse-4bit), synth:PRESET (made on first use), or a directory
#   LMLAB_SCENARIO    scenario file; LMLAB_CONTEXTS, LMLAB_REPS, LMLAB_CONFIGS: overrides ("-" = the scenario's)
#   LMLAB_REGRESSION_SCENARIO (scenarios/regression.json), LMLAB_URL (a running server; "-" = start one)
#   LMLAB_RUNTIMES    compare: NAME=lmlab|URL[,NAME=...]
#   LMLAB_RUN         run id for report/export (0 = latest); LMLAB_FORMAT md|ansi|csv|json; LMLAB_OUT_DIR (.)
#   LMLAB_BASELINE, LMLAB_CANDIDATE, LMLAB_THRESHOLD             gate
#   LMLAB_SYNTH_PRESET, LMLAB_SYNTH_SCALE (0.1), LMLAB_SYNTH_BITS (4), LMLAB_SYNTH_OUT   synth
set -uo pipefail
cd "$(dirname "$0")/.."
LMLAB="${LMLAB_BIN:-build/cli/lmlab}"
DB="${LMLAB_DB:-results/lmlab.db}"
FIX="${LMLAB_FIXTURES:-../shared/fixtures}"
SYNTH_DIR="${LMLAB_SYNTH_DIR:-results/synth}"
[ -x "$LMLAB" ] || { echo "no $LMLAB: run scripts/setup.sh first" >&2; exit 1; }
SYNTH_PRESETS="llama-3-8b qwen3-8b qwen3-30b-a3b qwen3.5-122b-a10b-like gemma-3-27b-like mixtral-8x7b"

# ask VAR "question" default: $VAR when set, else a line from stdin (empty = default). At the end of input it
# fails (status 3), so the action stops; the menu then reads end of input too and exits.
ask() {
  local var="$1" prompt="$2" default="$3" answer
  if [ -n "${!var:-}" ]; then
    echo "$prompt: ${!var} (from \$$var)" >&2
    answer="${!var}"
  else
    read -r -p "$prompt [$default]: " answer || { echo " (end of input)" >&2; exit 3; }
  fi
  answer="${answer:-$default}"
  [ "$answer" = "-" ] && answer=""
  printf '%s\n' "$answer"
}

# Runs the command, echoing it first, and reports a failure with its exit status (the menu goes on).
run() {
  echo "+ $*" >&2
  "$@"
  local rc=$?
  [ $rc -eq 0 ] || echo "(exit status $rc: $1 ${2:-} failed)" >&2
  return $rc
}

# needs SUBCOMMAND: says so clearly when this lmlab has not got it (the lab grows subcommands).
needs() {
  "$LMLAB" --help 2>/dev/null | grep -qE "^ +$1 " && return 0
  echo "this lmlab ($LMLAB) has no '$1' subcommand; running it anyway to show its own error:" >&2
  return 0
}

preset_arch() {
  case "$1" in
    llama-*) echo llama ;; qwen3-8b) echo qwen3 ;; qwen3-30b-a3b|qwen3.5-*) echo qwen3_moe ;;
    gemma-*) echo gemma3 ;; mixtral-*) echo mixtral ;; *) return 1 ;;
  esac
}

# make_synth PRESET SCALE BITS OUT: writes the model unless OUT already holds one. MoE synths get --embed-std 1, so
# their routing varies per token as a trained model's does (the SSD configs then stream what a real model would).
make_synth() {
  local preset="$1" scale="$2" bits="$3" out="$4" arch moe=()
  arch=$(preset_arch "$preset") || { echo "unknown synth preset '$preset' (known: $SYNTH_PRESETS)" >&2; return 2; }
  if [ -f "$out/config.json" ]; then echo "synth model $out exists; using it" >&2; return 0; fi
  case "$arch" in qwen3_moe | mixtral) moe=(--embed-std 1) ;; esac
  mkdir -p "$(dirname "$out")"
  run "$LMLAB" synth --arch "$arch" --preset "$preset" --scale "$scale" --bits "$bits" "${moe[@]}" --out "$out" >&2
}

# choose_model: prints the model directory for LMLAB_MODEL or the user's answer.
choose_model() {
  local fixtures answer
  fixtures=$(ls "$FIX/models" 2>/dev/null | tr '\n' ' ')
  echo "models: fixtures: $fixtures| synth:PRESET ($SYNTH_PRESETS) | a directory" >&2
  answer=$(ask LMLAB_MODEL "model" "coder-moe-sparse-4bit") || return 1
  case "$answer" in
    synth:*)
      local preset="${answer#synth:}" scale="${LMLAB_SYNTH_SCALE:-0.1}" bits="${LMLAB_SYNTH_BITS:-4}"
      local out="$SYNTH_DIR/$preset-s$scale-b$bits"
      make_synth "$preset" "$scale" "$bits" "$out" || return 1
      echo "$out" ;;
    */*|.*) echo "$answer" ;;
    *) if [ -d "$FIX/models/$answer" ]; then echo "$FIX/models/$answer"; else echo "$answer"; fi ;;
  esac
}

profile() {
  local model scenario contexts reps configs args=() run_id
  model=$(choose_model) || return 1
  [ -d "$model" ] || { echo "no model directory '$model'" >&2; return 1; }
  scenario=$(ask LMLAB_SCENARIO "scenario file" "scenarios/default.json") || return 1
  contexts=$(ask LMLAB_CONTEXTS "contexts (comma-separated, - = the scenario's)" "-") || return 1
  reps=$(ask LMLAB_REPS "repetitions (- = the scenario's)" "-") || return 1
  configs=$(ask LMLAB_CONFIGS "configs (comma-separated, - = all of the scenario's)" "-") || return 1
  [ -n "$contexts" ] && args+=(--contexts "$contexts")
  [ -n "$reps" ] && args+=(--reps "$reps")
  [ -n "$configs" ] && args+=(--configs "$configs")
  run_id=$(run "$LMLAB" bench "$scenario" --db "$DB" --model "$model" "${args[@]}") || return 1
  run "$LMLAB" report --db "$DB" --run "$run_id" --format ansi
}

regression() {
  local scenario url args=()
  scenario=$(ask LMLAB_REGRESSION_SCENARIO "regression scenario" "scenarios/regression.json") || return 1
  url=$(ask LMLAB_URL "server URL (- = start a fresh lmlab serve)" "-") || return 1
  [ -n "$url" ] && args+=(--url "$url")
  needs regression
  run "$LMLAB" regression "$scenario" --db "$DB" "${args[@]}"
}

compare() {
  local scenario runtimes args=() r
  scenario=$(ask LMLAB_SCENARIO "scenario file" "scenarios/ci-smoke.json") || return 1
  runtimes=$(ask LMLAB_RUNTIMES "runtimes (NAME=lmlab|URL, comma-separated)" "lmlab=lmlab") || return 1
  IFS=',' read -r -a list <<< "$runtimes"
  for r in "${list[@]}"; do args+=(--runtime "$r"); done
  needs compare
  run "$LMLAB" compare "$scenario" --db "$DB" "${args[@]}"
}

gate() {
  local base cand thr
  base=$(ask LMLAB_BASELINE "baseline run id" 1) || return 1
  cand=$(ask LMLAB_CANDIDATE "candidate run id" 2) || return 1
  thr=$(ask LMLAB_THRESHOLD "threshold" 0.05) || return 1
  run "$LMLAB" gate --db "$DB" --baseline "$base" --candidate "$cand" --threshold "$thr"
}

# --run ID, or nothing for 0 (report's default is the latest run; it refuses --run 0).
run_selector() {
  [ "$1" = 0 ] || printf -- '--run\n%s\n' "$1"
}

report() {
  local run_id fmt out sel
  run_id=$(ask LMLAB_RUN "run id (0 = latest)" 0) || return 1
  mapfile -t sel < <(run_selector "$run_id")
  fmt=$(ask LMLAB_FORMAT "format (md writes profiling_results_<host>.md and its charts | ansi)" md) || return 1
  if [ "$fmt" = md ]; then
    out=$(ask LMLAB_OUT_DIR "folder" .) || return 1
    run "$LMLAB" report --db "$DB" "${sel[@]}" --format md --out-dir "$out"
  else
    run "$LMLAB" report --db "$DB" "${sel[@]}" --format "$fmt"
  fi
}

export_run() {
  local run_id fmt out sel
  run_id=$(ask LMLAB_RUN "run id (0 = latest)" 0) || return 1
  mapfile -t sel < <(run_selector "$run_id")
  fmt=$(ask LMLAB_FORMAT "format (csv | json)" csv) || return 1
  out=$(ask LMLAB_OUT "output file" "run-$run_id.$fmt") || return 1
  run "$LMLAB" report --db "$DB" "${sel[@]}" --format "$fmt" --out "$out"
}

synth() {
  local preset scale bits out
  preset=$(ask LMLAB_SYNTH_PRESET "preset ($SYNTH_PRESETS)" qwen3-30b-a3b) || return 1
  scale=$(ask LMLAB_SYNTH_SCALE "scale" 0.1) || return 1
  bits=$(ask LMLAB_SYNTH_BITS "bits (4 | 8 | 16)" 4) || return 1
  out=$(ask LMLAB_SYNTH_OUT "output directory" "$SYNTH_DIR/$preset-s$scale-b$bits") || return 1
  make_synth "$preset" "$scale" "$bits" "$out" && echo "synth model in $out (profile it with model $out)"
}

dispatch() {
  case "$1" in
    1|profile) profile ;;
    2|regression) regression ;;
    3|compare) compare ;;
    4|gate) gate ;;
    5|list) run "$LMLAB" report --db "$DB" --list ;;
    6|report) report ;;
    7|export) export_run ;;
    8|synth) synth ;;
    q|Q|quit) exit 0 ;;
    *) echo "unknown choice: $1" >&2; return 2 ;;
  esac
}

if [ -n "${LMLAB_ACTION:-}" ]; then
  dispatch "$LMLAB_ACTION"
  exit $?
fi
while true; do
  echo
  echo "lmlab lab menu (database $DB)"
  echo "  1) profile a model (sweep + report)     5) list runs"
  echo "  2) regression suite                      6) write a report (markdown + charts, or ANSI)"
  echo "  3) compare runtimes                      7) export a run as CSV or JSON"
  echo "  4) gate a candidate run vs a baseline    8) make a synth model"
  echo "  q) quit"
  read -r -p "> " choice || exit 0
  dispatch "$choice" || true
done
