#!/usr/bin/env bash
# The main job on a fresh machine: set up (Debian packages, Release build), then the lab's default sweep:
# scenarios/default.json (vanilla / ssd / turbo / ssd+turbo x contexts 512, 4096, 8192 x 3 repetitions) on
# coder-moe-sparse-4bit into results/lmlab.db; prints the ANSI report and writes profiling_results_<host>.md
# at the repository root. About 2-3 minutes of sweep on the 2-core dev VM, after the build.
# Usage: bash scripts/run_main.sh [MODEL_DIR]   (fixtures: $LMLAB_FIXTURES, default ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
FIX="${LMLAB_FIXTURES:-../shared/fixtures}"
MODEL="${1:-$FIX/models/coder-moe-sparse-4bit}"
DB=results/lmlab.db
start=$(date +%s)
RUN=$(build/cli/lmlab bench scenarios/default.json --db "$DB" --model "$MODEL")
build/cli/lmlab report --db "$DB" --run "$RUN" --format ansi
build/cli/lmlab report --db "$DB" --run "$RUN" --format md --out-dir .
echo "main job: sweep and reports took $(( $(date +%s) - start )) s (run $RUN in $DB)"
