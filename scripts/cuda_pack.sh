#!/usr/bin/env bash
# Packs the CUDA build for the device tool: binaries (../shared/device/pack.sh), scripts/cuda_device.sh and
# the named fixture models with their golden files, into DEST (the lead's git-ignored .devcarry-cuda/).
# The device call carries at most 64 MiB, so each call names a subset of fixtures.
# Usage: [BUILD=build-cuda] scripts/cuda_pack.sh DEST [--fixtures-only | --binaries-only] MODEL...
# (--fixtures-only: for a later call on the same warm machine, which keeps the binaries an earlier call carried in
# another .devcarry-cuda* folder; --binaries-only: a variant's binaries without lib/ and fixtures, ~10 MB, beside a
# full folder whose lib/ the call links in: scripts/cuda_tq_vs_call.sh)
set -euo pipefail
dest=${1:?usage: cuda_pack.sh DEST [--fixtures-only] MODEL...}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}  # the CUDA-enabled build tree
fixtures=$root/../shared/fixtures
rm -rf "$dest" && mkdir -p "$dest/fixtures/models" "$dest/fixtures/golden"
bins=1 libs=1
if [ "${1:-}" = --fixtures-only ]; then bins=0; shift; fi
if [ "${1:-}" = --binaries-only ]; then libs=0; shift; fi
if [ $bins = 1 ]; then
strip -o /tmp/lmlab_tests.stripped "$build/tests/lmlab_tests"
strip -o /tmp/lmlab.stripped "$build/cli/lmlab"
mkdir -p /tmp/lmlab-pack && cp /tmp/lmlab_tests.stripped /tmp/lmlab-pack/lmlab_tests && cp /tmp/lmlab.stripped /tmp/lmlab-pack/lmlab
strip -o /tmp/lmlab-pack/lmlab_bench "$build/bench/lmlab_bench"  # the GPU GEMV micro-benchmarks
"$root/../shared/device/pack.sh" "$dest" /tmp/lmlab-pack/lmlab /tmp/lmlab-pack/lmlab_tests /tmp/lmlab-pack/lmlab_bench >/dev/null
# The libraries and binaries compress about 3x (ICU data 4x): xz here, python lzma there.
xz -T2 -6 "$dest"/lib/* "$dest"/lmlab "$dest"/lmlab_tests "$dest"/lmlab_bench
[ $libs = 1 ] || rm -rf "$dest/lib" "$dest/fixtures"
fi
cp "$root/scripts/cuda_device.sh" "$root/scripts/cuda_sweep_call.sh" "$root/scripts/cuda_tq_call.sh" \
  "$root/scripts/cuda_tq_vs_call.sh" "$root/scripts/cuda_step_call.sh" "$root/scripts/cuda_pv_call.sh" \
  "$root/scripts/clock_digest.py" "$dest/"
for m in "$@"; do
  cp -r "$fixtures/models/$m" "$dest/fixtures/models/"
  cp "$fixtures/golden/$m".* "$dest/fixtures/golden/"
done

du -sh "$dest"
