#!/usr/bin/env bash
# One device call for the TurboQuant decode (docs/cuda.md, twenty-fifth session): its tests, the attention step bench
# with the encode room off and on (LMLAB_TQ_ENCODE_ROOM=1), the 8B 4-bit decode at 100K / 40K with f16 and TurboQuant
# KV (issue 11), TurboQuant again with the room, then ncu of the warp decode and the encode while time is left. Run
# from a folder packed by scripts/cuda_pack.sh: BUDGET=seconds [KVC=100000,40000] bash .devcarry-cuda/cuda_tq_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-540} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER='CudaSmFootprint.*:CudaTurboQuant.DeviceRecords*:CudaTurboQuant.RecordsWritten*:CudaTurboQuant.TensorCoreDecode*:CudaKernels.Routing*:CudaKernels.FusedRouting*:*NanWeights*:*CudaGolden*/qwen3_moe*' TESTS_TIMEOUT=120 bash cuda_device.sh tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran" | tail -40
echo "t=$(( $(date +%s) - t0 ))"
ATTN_FILTER='cuda_attention/8b/(f16|turbo)/(decode|step)/(512|40000|100000)/' ATTN_TIMEOUT=70 bash cuda_device.sh attn
LMLAB_TQ_ENCODE_ROOM=1 ATTN_FILTER='cuda_attention/8b/turbo/step/(512|40000|100000)/' ATTN_TIMEOUT=45 bash cuda_device.sh attn | sed 's/^/room1 /'
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 120 ] && KV_TIMEOUT=$(( $(left) / 2 - 10 )) KV_CONTEXTS=${KVC:-100000,40000} KV_CTX=100448 bash cuda_device.sh kv-q4 | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"kv_bytes":[0-9]*\|"prefill_tok_s":[0-9.]*' | tr '\n' ' '; echo
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 100 ] && LMLAB_TQ_ENCODE_ROOM=1 KV_MODES=turbo KV_TIMEOUT=$(( $(left) - 20 )) KV_CONTEXTS=${KVC:-100000,40000} KV_CTX=100448 bash cuda_device.sh kv-q4 | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*' | tr '\n' ' ' | sed 's/^/room1 /'; echo
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 60 ] || exit 0
export LD_LIBRARY_PATH="$PWD/lib:${LD_LIBRARY_PATH:-}"
cublas=$(find /usr/local/cuda*/lib64 /usr/local/lib/python3*/dist-packages/nvidia /usr/lib/python3*/dist-packages/nvidia -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "${cublas:-/x/x}")"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
one_ncu() {  # name kernel filter
  timeout $(( $(left) - 15 )) "$ncu" --kernel-name "regex:$2" --launch-skip 3 --launch-count 1 --warp-sampling-interval 0 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats \
    --section InstructionStats --section SourceCounters --import-source no -f -o "/tmp/ncu-$1" \
    ./lmlab_bench --benchmark_filter="$3" --benchmark_min_time=0.01 > "$OUT/ncu-$1.log" 2>&1
  "$ncu" -i "/tmp/ncu-$1.ncu-rep" --page source --csv --print-source sass > "/tmp/sass-$1.csv" 2>&1
  python3 ../scripts/ncu_sass_summary.py "/tmp/sass-$1.csv" > "$OUT/sass-$1.txt" 2>&1
  "$ncu" -i "/tmp/ncu-$1.ncu-rep" > "$OUT/ncu-$1.txt" 2>&1
  grep -E "Duration|Elapsed Cycles|Executed Instructions  |Warp Cycles Per Issued|Eligible Warps|Registers Per|Achieved Occ|Block Limit" "$OUT/ncu-$1.txt"
}
one_ncu warps100k tq_decode_warps 'cuda_attention/8b/turbo/decode/100000/'
[ "$(left)" -gt 40 ] && one_ncu encode tq_encode 'cuda_attention/8b/turbo/step/512/'
echo "t=$(( $(date +%s) - t0 ))"
