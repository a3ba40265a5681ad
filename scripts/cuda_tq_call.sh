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
kv() {  # the 8B 4-bit decode at KVC (kv-q4), each mode's figures on a line
  KV_CONTEXTS=${KVC:-100000,40000} KV_CTX=100448 bash cuda_device.sh kv-q4 | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"kv_bytes":[0-9]*\|"prefill_tok_s":[0-9.]*' | tr '\n' ' '; echo
}
[ "$(left)" -gt 120 ] && KV_TIMEOUT=$(( $(left) / 2 - 10 )) kv
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 100 ] && LMLAB_TQ_ENCODE_ROOM=1 KV_MODES=turbo KV_TIMEOUT=$(( $(left) - 20 )) kv | sed 's/^/room1 /'
echo "t=$(( $(date +%s) - t0 ))"
[ "$(left)" -gt 60 ] || exit 0
one_ncu() {  # name kernel filter: cuda_device.sh's ncu-sass step, sampling every 32 cycles (the encode is ~10 us)
  NCU_NAME=$1 NCU_KERNEL=$2 NCU_FILTER=$3 NCU_TIMEOUT=$(( $(left) - 15 )) NCU_ARGS="--warp-sampling-interval 0" \
    NCU_SECTIONS="--section LaunchStats" bash cuda_device.sh ncu-sass
}
one_ncu warps100k tq_decode_warps 'cuda_attention/8b/turbo/decode/100000/'
[ "$(left)" -gt 40 ] && one_ncu encode tq_encode 'cuda_attention/8b/turbo/step/512/'
echo "t=$(( $(date +%s) - t0 ))"
