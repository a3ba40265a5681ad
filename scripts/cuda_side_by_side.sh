#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), after cuda_device.sh wrote the synth models (bench-*): llama.cpp's
# CUDA build (../shared/peers: built here from its source tarball, ~4 minutes on 16 cores) on random GGUF twins
# of the same shapes (gen_gguf.py), llama-bench pp512 / tg64 with flash attention, and lmlab's CPU backend on
# the lmlab synth models, so docs/cuda.md's side-by-side table comes from one session.
# Usage there: bash cuda_side_by_side.sh PEERS_DIR LMLAB_DIR   (PEERS_DIR: llama.cpp-src.tar.xz, gen_gguf.py,
# gguf-py/; LMLAB_DIR: the packed lmlab). Rows go to $OUT/side_by_side.txt.
set -uo pipefail
peers=$(cd "${1:?PEERS_DIR}" && pwd); lmlab_dir=$(cd "${2:?LMLAB_DIR}" && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out"
log=$out/side_by_side.txt
if [ ! -x /tmp/lb/bin/llama-bench ]; then
  mkdir -p /tmp/lc && tar -xJf "$peers/llama.cpp-src.tar.xz" -C /tmp/lc
  src=$(dirname "$(find /tmp/lc -maxdepth 2 -name CMakeLists.txt -printf "%d %p\n" | sort -n | head -1 | cut -d" " -f2)")
  cmake -S "$src" -B /tmp/lb -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF >/tmp/lb-config.log 2>&1
  cmake --build /tmp/lb -j16 --target llama-bench >/tmp/lb-build.log 2>&1 || { tail -20 /tmp/lb-build.log; exit 1; }
fi
tok=$(ls /tmp/synth-bench-*/tokenizer.json | head -1)
gen() { PYTHONPATH=$peers/gguf-py python3 "$peers/gen_gguf.py" --tokenizer "$tok" "$@"; }
# One GGUF at a time (the machine's 64 GiB disk also holds the lmlab synth models).
for m in ${MODELS:-q8b-bf16 q8b-q4_0 q30b-q4_0}; do
  case $m in
    q8b-bf16) gen --out /tmp/$m.gguf ;;
    q8b-q4_0) gen --q4_0 --out /tmp/$m.gguf ;;
    q30b-q4_0) gen --q4_0 --hidden 2048 --layers 48 --heads 32 --kv-heads 4 --experts 128 --top-k 8 --moe-ff 768 \
                 --out /tmp/$m.gguf ;;
  esac
  echo "== llama.cpp CUDA $m" | tee -a "$log"
  /tmp/lb/bin/llama-bench -m /tmp/$m.gguf -p 512 -n 64 -fa 1 -ngl 99 -r 3 2>&1 | grep -E '^\|' | tee -a "$log"
  rm -f /tmp/$m.gguf
done
for z in "$lmlab_dir"/lib/*.xz; do  # packed xz-compressed (cuda_pack.sh); python's lzma, xz-utils may be missing
  [ -e "$z" ] && [ ! -e "${z%.xz}" ] && python3 -c 'import lzma, sys; open(sys.argv[1][:-3], "wb").write(lzma.open(sys.argv[1]).read())' "$z"
done
export LD_LIBRARY_PATH="$lmlab_dir/lib:${LD_LIBRARY_PATH:-}"
for shape in ${SHAPES:-bf16 q4 moe}; do
  [ -d /tmp/synth-bench-$shape ] || continue
  echo "== lmlab CPU $shape (16 cores)" | tee -a "$log"
  timeout 240 "$lmlab_dir/lmlab" decode-bench --model /tmp/synth-bench-$shape --device cpu --ctx-size 1024 \
    --contexts 512 -n 8 --json 2>&1 | tail -1 | tee -a "$log"
done
