#!/usr/bin/env bash
# One device call for the TurboQuant decode (docs/cuda.md, twenty-sixth session): its tests, the attention alone with
# the tiles by bulk copies (the default: BulkTiles, no block barrier a tile, 3 buffers) and by cp.async
# (LMLAB_TQ_BULK_COPIES=0), the 8B 4-bit decode at 100K / 40K with f16 and TurboQuant KV (issue 11), ncu of the warp
# decode at 100K with its stall reasons, then compute-sanitizer's synccheck over the tensor-core decode test while time
# is left (racecheck: SAN_TOOLS=racecheck, which needs more than 5 minutes).
# Run from a folder packed by scripts/cuda_pack.sh:
#   BUDGET=seconds [KVC=100000,40000] [TQ_FILTER=gtest filter] bash .devcarry-cuda/cuda_tq_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-540} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER=${TQ_FILTER:-'CudaTurboQuant.TensorCoreDecode*:CudaTurboQuant.RecordsWritten*:CudaTurboQuant.DeviceRecords*:*CudaTurboQuantModel*/coder_dense'} TESTS_TIMEOUT=150 bash cuda_device.sh tests \
  | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -40
echo "t=$(( $(date +%s) - t0 ))"
ATTN_FILTER='cuda_attention/8b/(f16/decode/100000|turbo/(decode|step)/(512|40000|100000))/' ATTN_TIMEOUT=70 bash cuda_device.sh attn | grep BM_
LMLAB_TQ_BULK_COPIES=0 ATTN_FILTER='cuda_attention/8b/turbo/decode/(512|40000|100000)/' ATTN_TIMEOUT=45 bash cuda_device.sh attn | grep BM_ | sed 's/^/cp.async /'
echo "t=$(( $(date +%s) - t0 ))"
kv() {  # the 8B 4-bit decode at KVC (kv-q4), each mode's figures on a line
  KV_CONTEXTS=${KVC:-100000,40000} KV_CTX=100448 bash cuda_device.sh kv-q4 | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"kv_bytes":[0-9]*\|"prefill_tok_s":[0-9.]*' | tr '\n' ' '; echo
}
[ "$(left)" -gt 150 ] && [ "${SKIP_KV:-0}" = 0 ] && KV_TIMEOUT=$(( $(left) - 100 )) kv
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 50 ] && NCU_NAME=warps100k NCU_KERNEL=tq_decode_warps NCU_FILTER='cuda_attention/8b/turbo/decode/100000/' \
  NCU_TIMEOUT=$(( $(left) - 10 )) NCU_SECTIONS="--section LaunchStats" bash cuda_device.sh ncu-sass | grep -v "^name\|^NVIDIA\|^coder"
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 30 ] && SAN_TOOLS=${SAN_TOOLS:-synccheck} SAN_TIMEOUT=$(( $(left) - 10 )) bash cuda_device.sh sanitize | grep -v "^name\|^NVIDIA\|^coder"
echo "t=$(( $(date +%s) - t0 ))"
