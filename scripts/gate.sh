#!/usr/bin/env bash
# The CI performance gate (docs/gate.md): runs scenarios/ci-gate.json and compares the run with the committed baseline
# results/baselines/ci-gate.json. Needs a built tree (scripts/setup.sh).
#   scripts/gate.sh            exit 0 pass, 1 regression, 2 cannot compare; summary in build/gate/gate.md (+ .json)
#   scripts/gate.sh --refresh  re-measure and rewrite the baseline (commit it with the change that explains it)
# A flagged regression is measured again once and fails only if the second run flags too: a busy CI machine must
# not fail a change on one unlucky run (deterministic metrics fail the same way twice, so they still fail).
set -uo pipefail
cd "$(dirname "$0")/.."
LMLAB=build/cli/lmlab
SCENARIO=scenarios/ci-gate.json
BASELINE=results/baselines/ci-gate.json
OUT=build/gate
mkdir -p "$OUT"

measure() {  # prints the new run's id; progress goes to $OUT/bench.log
  rm -f "$OUT/gate.db"
  "$LMLAB" bench "$SCENARIO" --db "$OUT/gate.db" 2>"$OUT/bench.log"
}

if [ "${1:-}" = "--refresh" ]; then
  run=$(measure) || { cat "$OUT/bench.log"; echo "gate: the scenario did not run"; exit 2; }
  "$LMLAB" gate --db "$OUT/gate.db" --candidate "$run" --write-baseline "$BASELINE" || exit 2
  echo "gate: baseline refreshed: $BASELINE (review and commit it)"
  exit 0
fi

for attempt in 1 2; do
  start=$(date +%s)
  run=$(measure) || { cat "$OUT/bench.log"; echo "gate: cannot compare: the gate scenario did not run"; exit 2; }
  "$LMLAB" gate --db "$OUT/gate.db" --candidate "$run" --baseline-json "$BASELINE" --scenario "$SCENARIO" \
    --markdown "$OUT/gate.md" --json "$OUT/gate.json"
  rc=$?
  echo "gate: attempt $attempt took $(( $(date +%s) - start )) s, exit $rc"
  [ "$rc" -ne 1 ] && exit "$rc"
  [ "$attempt" -eq 1 ] && echo "gate: a regression was flagged; measuring once more to rule out a busy machine"
done
exit 1
