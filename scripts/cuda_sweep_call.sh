#!/usr/bin/env bash
# One device call of issue 11's sweep (scripts/cuda_device.sh swiftlm) on a warm machine of the device tool, from the
# folder scripts/cuda_pack.sh fills (.devcarry-cuda/). The synth and the lab's database live in /tmp/lmlab-keep/,
# which a warm machine keeps between calls (the checkout there is a fresh copy on every call: an ignored folder inside
# it was gone by the second call, twenty-fourth session), so a second and third call neither rewrite the 16 GB synth
# nor lose the runs before them. BUDGET_S: seconds from now at which the bench stops (SWIFT_DEADLINE), so
# the report and the database still come back inside the call's limit; REPS, SWIFT_CONTEXTS, SWIFT_CONFIGS as for
# cuda_device.sh. Usage there: REPS=1 BUDGET_S=560 bash .devcarry-cuda/cuda_sweep_call.sh; afterwards commit the
# call's lmlab.db as docs/profiling_results_<host>.db.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
keep=/tmp/lmlab-keep
mkdir -p "$keep"
# The first call on a machine starts from the committed database of its GPU kind (cuda_device.sh swiftlm seeds
# SWIFT_DB from docs/profiling_results_<host>.db), so the runs of several sessions sit in one database and report.
export SYNTH_ROOT=$keep SWIFT_DB=$keep/sweep.db
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
df -h "$keep" | tail -1
ls -la "$keep"
SWIFT_DEADLINE=$(( $(date +%s) + ${BUDGET_S:-560} )) bash "$here/cuda_device.sh" swiftlm
