#!/usr/bin/env bash
# One device call for where a decode step goes (docs/cuda.md, twenty-ninth session): the 8B 4-bit synth's decode at
# 512 / 100K / 40K with the f16 and the TurboQuant KV, each with the device's busy time per replayed step
# (decode-bench's device_step_ms: GraphStepTimer) beside the wall step, the GPU's SM clock and power through each run
# (nvidia-smi every 200 ms), then the step's GEMVs and TurboQuant attention inside a running decode at 100K and 512
# (ncu without its clock lock: kernels-q4). Before it, the tests of what it relies on.
# Run from a folder packed by scripts/cuda_pack.sh:
#   BUDGET=seconds [CONTEXTS="512 100000 40000"] bash .devcarry-cuda/cuda_step_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-450} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER=${STEP_FILTER:-'*ReplayedDecode*:*CudaGolden*coder_dense*:*CudaChained*coder_dense*'} TESTS_TIMEOUT=100 \
  bash cuda_device.sh tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -12
echo "t=$(( $(date +%s) - t0 ))"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader -lms 200 \
  > "$OUT/smi.csv" 2>&1 &
smi=$!
kv() {  # mode context: one decode-bench run, its figures on a line; marks around it for the clock log
  echo "mark $(date +%s.%N) $1 $2" >> "$OUT/marks.txt"
  KV_MODES=$1 KV_N=128 KV_CONTEXTS=$2 KV_CTX=$(($2 + 448)) KV_TIMEOUT=$(( $(left) - 10 )) bash cuda_device.sh kv-q4 \
    | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"device_step_ms":[0-9.]*' \
    | tr '\n' ' '; echo
  echo "mark $(date +%s.%N) end" >> "$OUT/marks.txt"
}
for ctx in ${CONTEXTS:-512 100000 40000}; do for mode in turbo f16; do
  [ "$(left)" -gt 80 ] && kv $mode "$ctx"
done; done
echo "t=$(( $(date +%s) - t0 ))"
kill $smi
python3 clock_digest.py "$OUT/smi.csv" "$OUT/marks.txt"
[ "$(left)" -gt 90 ] && { KERNELS='gemv_kernel|tq_decode_warps|tq_merge' SKIP=0 COUNT=217 CTX=100000 bash cuda_device.sh kernels-q4;
  mv "$OUT/kernels-q4.csv" "$OUT/kernels-q4-100k.csv"; }
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 40 ] && KERNELS='gemv_kernel' SKIP=0 COUNT=145 CTX=512 bash cuda_device.sh kernels-q4
echo "t=$(( $(date +%s) - t0 ))"
rm -f "$OUT"/*.err
