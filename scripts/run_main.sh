#!/usr/bin/env bash
# The main job on a fresh machine: set up (Debian packages, Release build), then
#  1. the default profile: scenarios/default.json (Vanilla / SSD Stream / TurboQuant / SSD + TurboQuant x
#     contexts 512, 4096, 8192 x 3 repetitions, plus each config's perplexity and KL divergence from Vanilla on
#     held-out text) on coder-moe-sparse-4bit into results/lmlab.db;
#  2. the prompt-cache and sliding-window regression suite (`lmlab regression`, its own run in the same
#     database) when this lmlab has the subcommand;
#  3. the ANSI report on stdout and profiling_results_<host>.md with its SVG charts at the repository root; both
#     show the latest regression suite's checks as a section.
# At most 5 minutes on 2 cores after the build. Exit status: non-zero when the sweep or the suite failed.
# Usage: bash scripts/run_main.sh [MODEL_DIR]   (fixtures: $LMLAB_FIXTURES, default ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
FIX="${LMLAB_FIXTURES:-../shared/fixtures}"
MODEL="${1:-$FIX/models/coder-moe-sparse-4bit}"
DB=results/lmlab.db
LMLAB=build/cli/lmlab
start=$(date +%s)
RUN=$("$LMLAB" bench scenarios/default.json --db "$DB" --model "$MODEL")
suite=0
# (`lmlab regression --help` would print the main help and succeed even without the subcommand.)
if "$LMLAB" --help 2>/dev/null | grep -qE '^ +regression '; then
  "$LMLAB" regression scenarios/regression.json --db "$DB" >&2 || suite=$?
else
  echo "main job: this lmlab has no 'regression' subcommand yet: the regression suite is skipped" >&2
fi
"$LMLAB" report --db "$DB" --run "$RUN" --format ansi
"$LMLAB" report --db "$DB" --run "$RUN" --format md --out-dir .
echo "main job: sweep, regression suite and reports took $(( $(date +%s) - start )) s (run $RUN in $DB)"
[ "$suite" -eq 0 ] || echo "main job: the regression suite FAILED (exit status $suite); see its section above" >&2
exit "$suite"
