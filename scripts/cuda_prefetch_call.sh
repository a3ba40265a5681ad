#!/usr/bin/env bash
# One device call for the TurboQuant decode's L2 prefetch of the weights after it (docs/cuda.md, thirtieth session):
# the tests of what it relies on, then the 8B 4-bit synth's decode (decode-bench: tok/s, the wall step and the device's
# busy time per replayed step) for each run of RUNS, "kv_mode:context:MB:from%" (MB 0: no prefetch;
# LMLAB_L2_PREFETCH_MB / LMLAB_L2_PREFETCH_FROM), while BUDGET seconds last, with the GPU's SM clock and power through
# each run (nvidia-smi every 200 ms). Run from a folder packed by scripts/cuda_pack.sh:
#   BUDGET=seconds [RUNS="turbo:100000:0:50 turbo:100000:24:50 f16:100000:0:50"] bash .devcarry-cuda/cuda_prefetch_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-450} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER=${STEP_FILTER:-'*ReplayedDecode*:*CudaGolden*coder_dense*:*CudaChained*coder_dense*:CudaTurboQuant.DecodeWithL2Prefetch*:L2Prefetch.*'} \
  TESTS_TIMEOUT=100 bash cuda_device.sh tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -14
echo "t=$(( $(date +%s) - t0 ))"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader -lms 200 \
  > "$OUT/smi.csv" 2>&1 &
smi=$!
for run in ${RUNS:-turbo:100000:0:50 turbo:100000:24:50 f16:100000:0:50 turbo:100000:40:70 turbo:512:0:50 turbo:512:24:0}; do
  IFS=: read -r mode ctx mb from <<< "$run"
  [ "$(left)" -gt 70 ] || break
  echo "mark $(date +%s.%N) $mode $ctx/$mb/$from" >> "$OUT/marks.txt"
  echo -n "$run: "
  LMLAB_L2_PREFETCH_MB=$mb LMLAB_L2_PREFETCH_FROM=$from KV_MODES=$mode KV_N=128 KV_CONTEXTS=$ctx KV_CTX=$((ctx + 448)) \
    KV_TIMEOUT=$(( $(left) - 10 )) bash cuda_device.sh kv-q4 \
    | grep -o '"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"device_step_ms":[0-9.]*\|"prefill_tok_s":[0-9.]*' \
    | tr '\n' ' '; echo " t=$(( $(date +%s) - t0 ))"
  echo "mark $(date +%s.%N) end" >> "$OUT/marks.txt"
done
kill $smi
python3 - "$OUT/smi.csv" "$OUT/marks.txt" <<'PY'
import sys, datetime, statistics as st
rows = []
for l in open(sys.argv[1]):
    p = [x.strip() for x in l.split(',')]
    try:
        t = datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        rows.append((t, *(float(x.split()[0]) for x in p[1:5])))
    except (ValueError, IndexError):
        pass
marks = [l.split() for l in open(sys.argv[2])]
for a, b in zip(marks, marks[1:]):
    if a[2] == 'end':
        continue
    w = [r for r in rows if float(a[1]) <= r[0] <= float(b[1])]
    if w:  # the decode is each run's last seconds
        print(f"{a[2]:6s} {a[3]:>14s}: SM MHz median {st.median(r[1] for r in w):.0f}, last 1.6 s "
              f"{st.median(r[1] for r in w[-8:]):.0f}; power max {max(r[3] for r in w):.0f} W")
PY
nvidia-smi --query-gpu=name --format=csv,noheader
rm -f "$OUT"/*.err
