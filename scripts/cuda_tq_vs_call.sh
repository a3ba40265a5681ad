#!/usr/bin/env bash
# One device call comparing TurboQuant decode variants (docs/cuda.md, twenty-seventh session): this folder (A, e.g.
# main's build, packed with fixtures by scripts/cuda_pack.sh) against VARIANTS, folders packed beside it with
# `scripts/cuda_pack.sh DEST --binaries-only` (A's lib is linked into them). In order of need, while BUDGET seconds
# last: the last variant's tests (TensorCoreDecode*, records, coder_dense perplexity), the attention alone of A and
# the last variant twice each, the 8B 4-bit decode at 100K (the last variant's TurboQuant, A's f16), the other
# variants' attention alone, then A's TurboQuant decode.
# Run from the repository root's copy on the device:
#   BUDGET=seconds VARIANTS=".devcarry-cuda-b .devcarry-cuda-c" bash .devcarry-cuda/cuda_tq_vs_call.sh
set -u
cd "$(dirname "$0")"
A=$PWD
cd ..
read -r -a vs <<< "${VARIANTS:?VARIANTS names the variant folders}"
last=$PWD/${vs[-1]}
export OUT=${OUT:-/tmp/out}
t0=$(date +%s); left() { echo $(( ${BUDGET:-300} - ($(date +%s) - t0) )); }
bash "$A/cuda_device.sh" > /dev/null 2>&1  # unpacks A and its lib
for f in "${vs[@]}"; do ln -sfn "$A/lib" "$f/lib"; bash "$f/cuda_device.sh" > /dev/null 2>&1; done
(bash "$A/cuda_device.sh" synth-q4 > /tmp/synth-q4.log 2>&1 &)
FILTER='CudaTurboQuant.TensorCoreDecode*:CudaTurboQuant.RecordsWritten*:*CudaTurboQuantModel*/coder_dense:TqPairIndex.*' \
  TESTS_TIMEOUT=120 bash "$last/cuda_device.sh" tests | grep -E "OK|FAILED|PASSED|SKIPPED|tests ran|Failure|Expected|Which|actual" | tail -30
echo "t=$(( $(date +%s) - t0 ))"
attn() {  # folders
  for f in "$@"; do
    ATTN_FILTER='cuda_attention/8b/turbo/decode/(40000|100000)/' ATTN_TIMEOUT=40 bash "$f/cuda_device.sh" attn | grep BM_ \
      | sed "s|^|$(basename "$f") |"
  done
  echo "t=$(( $(date +%s) - t0 ))"
}
kv() {  # folder mode: the 8B 4-bit decode at 100K
  KV_MODES=$2 KV_CONTEXTS=100000 KV_CTX=100448 KV_TIMEOUT=$(( $(left) - 10 )) bash "$1/cuda_device.sh" kv-q4 \
    | grep -o '"kv_mode":"[a-z0-9]*"\|"context":[0-9]*\|"decode_tok_s":[0-9.]*\|"step_ms_p50":[0-9.]*\|"kv_bytes":[0-9]*' \
    | tr '\n' ' ' | sed "s|^|$(basename "$1") |"
  echo; echo "t=$(( $(date +%s) - t0 ))"
}
attn "$A" "$last" "$A" "$last"
[ "$(left)" -gt 90 ] && kv "$last" turbo
[ "$(left)" -gt 90 ] && kv "$A" f16
[ "$(left)" -gt 60 ] && [ ${#vs[@]} -gt 1 ] && attn "${vs[@]:0:${#vs[@]}-1}"
[ "$(left)" -gt 90 ] && kv "$A" turbo
echo "t=$(( $(date +%s) - t0 ))"
