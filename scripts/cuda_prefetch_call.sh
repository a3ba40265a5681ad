#!/usr/bin/env bash
# One device call for the L2 prefetches of the thirtieth session (docs/cuda.md): the TurboQuant decode asking L2 for
# the weights after it, and each decode GEMV row group asking for its rows. The tests of what they rely on, the 8B
# 4-bit GEMVs alone without and with the rows' prefetch (twice each, alternated), then the 8B 4-bit synth's decode
# (decode-bench: tok/s, the wall step and the device's busy time per replayed step) for each run of RUNS,
# "kv_mode:context:MB:from%:rows" (LMLAB_L2_PREFETCH_MB, 0: none; LMLAB_L2_PREFETCH_FROM; LMLAB_GEMV_L2_ROWS), while
# BUDGET seconds last, with the GPU's SM clock and power through each run (nvidia-smi every 200 ms). Run from a folder
# packed by scripts/cuda_pack.sh:
#   BUDGET=seconds [RUNS="turbo:100000:0:50:0 turbo:100000:24:50:0"] bash .devcarry-cuda/cuda_prefetch_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-450} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER=${STEP_FILTER:-'*ReplayedDecode*:*CudaGolden*coder_dense*:*CudaChained*coder_dense*:*L2*'} \
  TESTS_TIMEOUT=100 bash cuda_device.sh tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -14
echo "t=$(( $(date +%s) - t0 ))"
for rows in 0 1 0 1; do
  echo "GEMV alone, LMLAB_GEMV_L2_ROWS=$rows"
  LMLAB_GEMV_L2_ROWS=$rows timeout 60 ./lmlab_bench --benchmark_filter='cuda_gemv/8b_.*/q4/n1' --benchmark_min_time=0.05 \
    2>&1 | grep "^BM_" | awk '{print $1, $2, $3, $NF}'
done
echo "t=$(( $(date +%s) - t0 ))"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader -lms 200 \
  > "$OUT/smi.csv" 2>&1 &
smi=$!
for run in ${RUNS:-f16:512:0:0:0 f16:512:24:0:0 f16:512:0:0:1 turbo:512:24:0:0 turbo:100000:0:50:0 \
               turbo:100000:24:50:0 f16:100000:0:50:0 f16:100000:24:50:0 turbo:100000:24:50:1}; do
  IFS=: read -r mode ctx mb from rows <<< "$run"
  [ "$(left)" -gt 70 ] || break
  echo "mark $(date +%s.%N) $mode $ctx/$mb/$from/$rows" >> "$OUT/marks.txt"
  echo -n "$run: "
  LMLAB_L2_PREFETCH_MB=$mb LMLAB_L2_PREFETCH_FROM=$from LMLAB_GEMV_L2_ROWS=$rows KV_MODES=$mode KV_N=128 KV_CONTEXTS=$ctx KV_CTX=$((ctx + 448)) \
    KV_TIMEOUT=$(( $(left) - 10 )) bash cuda_device.sh kv-q4 \
    | grep -o '"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"device_step_ms":[0-9.]*\|"prefill_tok_s":[0-9.]*' \
    | tr '\n' ' '; echo " t=$(( $(date +%s) - t0 ))"
  echo "mark $(date +%s.%N) end" >> "$OUT/marks.txt"
done
kill $smi
python3 clock_digest.py "$OUT/smi.csv" "$OUT/marks.txt"
nvidia-smi --query-gpu=name --format=csv,noheader
rm -f "$OUT"/*.err
