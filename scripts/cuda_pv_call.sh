#!/usr/bin/env bash
# One device call for the TurboQuant warps decode's P x V by columns (docs/cuda.md, thirty-first session; opt-in
# LMLAB_TQ_PV_COLUMNS=1): the model's perplexity and the golden suite on coder-dense and the tensor-core decode test
# with it on, the attention alone with it off and on (alternated), then the 8B 4-bit decode at 100K: TurboQuant with it
# off and on, and f16, each with decode-bench's device_step_ms. If the tests pass and the decode is not slower, it
# becomes the default.
# Run from a folder packed by scripts/cuda_pack.sh:
#   BUDGET=seconds [CONTEXT=100000] bash .devcarry-cuda/cuda_pv_call.sh
set -u
cd "$(dirname "$0")"
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-500} - ($(date +%s) - t0) )); }
(bash cuda_device.sh synth-q4 > /tmp/synth-q4.log 2>&1 &)
LMLAB_TQ_PV_COLUMNS=1 FILTER='*CudaTurboQuantModel*/coder_dense:*CudaGolden*/coder_dense:CudaTurboQuant.TensorCoreDecode*' \
  TESTS_TIMEOUT=200 bash cuda_device.sh tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -16
echo "t=$(( $(date +%s) - t0 ))"
for pc in 0 1 0 1; do
  LMLAB_TQ_PV_COLUMNS=$pc ATTN_FILTER='cuda_attention/8b/turbo/decode/(40000|100000)/' ATTN_TIMEOUT=50 bash cuda_device.sh attn \
    | grep BM_ | sed "s/^/pv_columns=$pc /"
done
echo "t=$(( $(date +%s) - t0 ))"
ctx=${CONTEXT:-100000}
for run in turbo:0 turbo:1 f16:0; do
  mode=${run%:*} pc=${run#*:}
  [ "$(left)" -gt 60 ] || break
  echo -n "$mode pv_columns=$pc: "
  LMLAB_TQ_PV_COLUMNS=$pc KV_MODES=$mode KV_N=64 KV_CONTEXTS=$ctx KV_CTX=$((ctx + 448)) KV_TIMEOUT=$(( $(left) - 10 )) \
    bash cuda_device.sh kv-q4 \
    | grep -o '"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"device_step_ms":[0-9.]*' | tr '\n' ' '; echo
done
echo "t=$(( $(date +%s) - t0 ))"
