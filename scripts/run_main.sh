#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the default model end to end.
# (Until the lab's profiling sweep lands this verifies coder-moe against transformers' golden outputs,
# scores its perplexity and generates from it, printing prompt and decode tok/s.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
FIX="${LMLAB_FIXTURES:-../shared/fixtures}"
MODEL="${1:-$FIX/models/coder-moe}"
NAME="$(basename "$MODEL")"
build/cli/lmlab info --model "$MODEL"
[ -f "$FIX/golden/$NAME.safetensors" ] && build/cli/lmlab verify --model "$MODEL" --golden "$FIX/golden/$NAME.safetensors"
[ -f "$FIX/golden/$NAME.safetensors" ] && build/cli/lmlab perplexity --model "$MODEL" --golden "$FIX/golden/$NAME.safetensors"
build/cli/lmlab generate --model "$MODEL" --prompt $'def fibonacci(n):\n' -n 128
