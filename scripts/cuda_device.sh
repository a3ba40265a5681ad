#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), from a folder packed by ../shared/device/pack.sh holding lmlab,
# lmlab_tests, lib/, fixtures/ and this script: the CUDA kernel and golden suites, then decode/prefill
# benchmarks on synth models of real shapes, CPU-free. Results (logs, JSON rows) go to $OUT.
# Usage there: bash cuda_device.sh [synth-bf16|synth-q4|synth-moe] [tests] [gemv] [bench-bf16] [bench-q4] [bench-moe] [profile-bf16|profile-q4|profile-moe]
# (gemv: lmlab_bench's GPU GEMV micro-benchmarks at the qwen3-8b / 30b-a3b shapes, to gemv.txt;
#  attn: lmlab_bench's attention alone (f16 and TurboQuant decode at 4K-100K positions, a 512-query prefill chunk),
#  once per LMLAB_TILED_DECODE_MIN_POSITIONS value in TILED (default: the engine's), ATTN_FILTER narrows, to attn.txt;
#  kv-SHAPE: decode with the f16 and the TurboQuant KV cache (KV_MODES) at KV_CONTEXTS, to kv.jsonl (PREFILL_SIZE:
#   the prompt's chunk, KV_N: decode steps);
#  swiftlm: scenarios/swiftlm-cuda.json on the 30b-a3b 4-bit synth (SWIFT_CONTEXTS, SWIFT_CONFIGS, REPS; SWIFT_DB:
#  a database to append to, e.g. ../docs/profiling_results_h200.db, copied back there after the run; SWIFT_DEADLINE:
#  epoch seconds at which the bench stops), the database and profiling_results_<host>.md to $OUT, after an iobench of
#  the synth's largest file (scripts/cuda_sweep_call.sh: one call of the sweep on a warm machine);
#  SYNTH_ROOT: where the synths are written (default /tmp);
#  stream-moe: iobench as swiftlm's, then decode-bench --stream-experts on the 30b-a3b 4-bit synth with the swiftlm
#  SSD config's 1.5 GB cache, once per LMLAB_STREAM_GRAPH value in STREAM_GRAPH (default "0 1"), to stream.jsonl:
#  the decode's SSD bytes, misses and read rate against the drive; STREAM_INPUTS: decode-bench --decode-tokens
#  (default random: the synth's greedy decode repeats its routing);
#  ab-SHAPE: AB_VAR=LMLAB_FUSED_ROUTING (or another DecodeOptions knob) 0 / 1 alternated over SHAPE's decode, to ab.jsonl;
#  vs-SHAPE: this folder's binary against VS_DIR's (another packed folder) and under VS_ENVS, to vs.jsonl;
#  sanitize: compute-sanitizer over tests (SAN_TOOLS, SAN_FILTER);
#  ncu-sass: a benchmark kernel's SASS with executions and stall samples per instruction, to sass.csv;
#  kernels-SHAPE: the mean time of the kernels matching KERNELS inside SHAPE's decode, to kernels-SHAPE.csv)
# (trace-SHAPE: the decode under Nsight Systems, graphs on: per-kernel time and the gaps; profile-*: one decode step's kernels under ncu, graphs off unless PROFILE_GRAPH=1: time per kernel name, to profile.csv / stdout)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/out}
mkdir -p "$out"
# cuBLAS: from the toolkit or the pip wheels, whichever the machine has.
cublas=$(find /usr/local/cuda*/lib64 /usr/lib/x86_64-linux-gnu /usr/local/lib/python3*/dist-packages/nvidia \
  /usr/lib/python3*/dist-packages/nvidia /opt -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$here/lib:$(dirname "${cublas:-/nonexistent/x}"):$(dirname "${cublas:-/x/x}" | sed 's|cublas/lib|cu13/lib|'):${LD_LIBRARY_PATH:-}"
# Python's lzma (xz-utils may be missing there), once per call (each .xz removed), under a lock and without
# LD_LIBRARY_PATH: two steps started at once (e.g. `synth-moe &`) raced, and python loaded the half-written
# lib/liblzma.so.5 through the path set above.
(
  flock 9
  for z in "$here"/lib/*.xz "$here"/*.xz; do
    [ -e "$z" ] || continue
    env -u LD_LIBRARY_PATH python3 -c 'import lzma, sys; open(sys.argv[1][:-3] + ".part", "wb").write(lzma.open(sys.argv[1]).read())' "$z" \
      && mv "${z%.xz}.part" "${z%.xz}" && rm "$z"
  done
) 9> "$here/.unpack.lock"
chmod +x "$here"/lmlab "$here"/lmlab_tests "$here"/lmlab_bench 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
# The tests read fixtures from $LMLAB_FIXTURES_DIR (tests/fixtures.h); each call carries some
# (.devcarry-cuda*/fixtures of this and earlier calls on the same machine), linked there.
export LMLAB_FIXTURES_DIR=/tmp/lmlab-fixtures
fixdir=$LMLAB_FIXTURES_DIR
mkdir -p "$fixdir/models" "$fixdir/golden"
for d in "$here"/../.devcarry-cuda*/fixtures/models/* "$here"/../.devcarry-cuda*/fixtures/golden/*; do
  [ -e "$d" ] && ln -sfn "$(cd "$(dirname "$d")" && pwd)/$(basename "$d")" "$fixdir/$(basename "$(dirname "$d")")/"
done
ls "$fixdir/models" | tr '\n' ' '; echo
filter=${FILTER:-'*Cuda*:Backend.*:GpuLayerPlan.*:*cuda'}  # *cuda: the KV suites' device variants
# Nsight Compute, and the sections the ncu-* steps collect (throughput, occupancy, stalls).
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
ncu_sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats
  --section LaunchStats --section SchedulerStats)
# The synth of SHAPE (bf16, q4, moe) in /tmp/synth-bench-SHAPE, written once per warm machine; written under another
# name and renamed, so a `synth-SHAPE` step in the background and a later step that waits for it never see half of it.
synth_dir() {
  local shape=$1 dir=${SYNTH_ROOT:-/tmp}/synth-bench-$1 args  # SYNTH_ROOT: an ignored folder a warm machine keeps
  case $shape in
    bf16) args=(--preset qwen3-8b) ;;
    q4) args=(--preset qwen3-8b --bits 4 --group-size 64) ;;
    moe) args=(--preset qwen3-30b-a3b --bits 4 --group-size 64 --embed-std 1) ;;  # routing that varies per token
  esac
  while [ -e "$dir.partial" ]; do sleep 2; done  # a background synth-SHAPE step is writing it
  if [ ! -d "$dir" ]; then
    : > "$dir.partial"
    /usr/bin/time -f "synth $shape %e s" "$here/lmlab" synth "${args[@]}" --out "$dir.tmp" --quiet \
      --tokenizer-from "$(dirname "$(ls "$fixdir"/models/*/tokenizer.json | head -1)")" --vocab 151936 >&2 \
      && mv "$dir.tmp" "$dir"
    rm -f "$dir.partial"
  fi
  echo "$dir"
}
# Time per kernel name from an ncu --csv file of gpu__time_duration.sum rows: total, share, launches, mean.
kernel_times() {
  python3 - "$1" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if not rows: sys.exit("no kernel rows in " + sys.argv[1])
head, body = rows[0], rows[1:]
k, v = head.index("Kernel Name"), head.index("Metric Value")
tot, cnt = collections.Counter(), collections.Counter()
for r in body:
    tot[r[k][:60]] += float(r[v].replace(",", "")); cnt[r[k][:60]] += 1
s = sum(tot.values())
for name, t in tot.most_common(25):
    print(f"{t/1e3:10.1f} us {100*t/s:5.1f}% {cnt[name]:5d}x {t/cnt[name]/1e3:8.2f} us each  {name}")
print(f"{s/1e3:10.1f} us total over {sum(cnt.values())} kernels")
PY
}
for step in "$@"; do
  case $step in
    tests)
      # TESTS_TIMEOUT: a hung test (e.g. a graph waiting for the host) must not take the whole call with it
      timeout "${TESTS_TIMEOUT:-540}" "$here/lmlab_tests" --gtest_filter="$filter" 2>&1 | tee "$out/tests.log" | tail -40
      ;;
    gemv)  # GEMV_WARPS="12 24": one pass per LMLAB_GEMV_WARPS_PER_SM value
      for wps in ${GEMV_WARPS:-24}; do echo "warps per SM: $wps"; LMLAB_GEMV_WARPS_PER_SM=$wps "$here/lmlab_bench" \
        --benchmark_filter="${GEMV_FILTER:-cuda_gemv}" --benchmark_min_time=0.05 2>&1 | tee -a "$out/gemv.txt" \
        | grep "^BM_\|^warps" | awk '{print $1, $2, $3, $NF}'; done
      ;;
    attn)
      for m in ${TILED:-default}; do echo "tiled decode from: $m"
        ( [ "$m" = default ] || export LMLAB_TILED_DECODE_MIN_POSITIONS=$m
          timeout "${ATTN_TIMEOUT:-300}" "$here/lmlab_bench" --benchmark_filter="${ATTN_FILTER:-cuda_attention}" \
            --benchmark_min_time=0.05 ) 2>&1 | tee -a "$out/attn.txt" | grep "^BM_\|^tiled"
      done
      ;;
    swiftlm)  # scenarios/swiftlm-cuda.json on the qwen3-30b-a3b 4-bit synth: the lab's database and report to $OUT
      dir=$(synth_dir moe)
      "$here/lmlab" iobench --file "$(ls -S "$dir"/*.safetensors | head -1)" 2>&1 | tee "$out/iobench.txt" | tail -3
      # The host label names the GPU the device tool lent (H100 or H200), so a report never says h200 for an H100.
      gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
      case $gpu in *H200*) label=h200 ;; *H100*) label=h100 ;; *) label=gpu ;; esac
      echo "GPU: $gpu (host label ${HOST_LABEL:-$label})"
      # SWIFT_DB: the database to append this call's samples to, so the sweep can be completed over several calls and
      # sessions (each run keeps its commit and environment); where it does not exist yet, it starts as the committed
      # one of this host (docs/profiling_results_<host>.db).
      seed=$here/../docs/profiling_results_${HOST_LABEL:-$label}.db
      [ -n "${SWIFT_DB:-}" ] && [ ! -e "$SWIFT_DB" ] && [ -e "$seed" ] && cp "$seed" "$SWIFT_DB" && echo "database seeded from $seed"
      [ -n "${SWIFT_DB:-}" ] && [ -e "$SWIFT_DB" ] && [ ! -e "$out/lmlab.db" ] && cp "$SWIFT_DB" "$out/lmlab.db"
      # SWIFT_DEADLINE (epoch seconds): the bench stops there, whatever the synth and iobench took before it.
      # At least 1 s: `timeout 0` would mean no limit at all, a negative one an error and no bench.
      limit=${SWIFT_TIMEOUT:-540}; [ -n "${SWIFT_DEADLINE:-}" ] && limit=$((SWIFT_DEADLINE - $(date +%s)))
      [ "$limit" -ge 1 ] || limit=1
      timeout "$limit" "$here/lmlab" bench "$here/../scenarios/swiftlm-cuda.json" --model "$dir" \
        --db "$out/lmlab.db" --contexts "${SWIFT_CONTEXTS:-512,40000,100000}" --reps "${REPS:-1}" --host "${HOST_LABEL:-$label}" \
        ${SWIFT_CONFIGS:+--configs $SWIFT_CONFIGS} 2>&1 | tee "$out/swiftlm-bench.log" | tail -40  # every sample's line kept
      # SWIFT_DB also names where the next call on this warm machine finds the database (an ignored folder it keeps).
      [ -n "${SWIFT_DB:-}" ] && cp "$out/lmlab.db" "$SWIFT_DB"
      "$here/lmlab" report --db "$out/lmlab.db" --format csv --out "$out/samples.csv"  # decode SSD bytes, drive bps
      "$here/lmlab" report --db "$out/lmlab.db" --format md --out-dir "$out" && "$here/lmlab" report --db "$out/lmlab.db" --no-color
      ;;
    stream-moe)
      dir=$(synth_dir moe)
      "$here/lmlab" iobench --file "$(ls -S "$dir"/*.safetensors | head -1)" 2>&1 | tee -a "$out/iobench.txt" | tail -3
      for sg in ${STREAM_GRAPH:-0 1}; do LMLAB_STREAM_GRAPH=$sg timeout "${STREAM_TIMEOUT:-200}" "$here/lmlab" decode-bench \
        --model "$dir" --device cuda --stream-experts --expert-cache-mb "${STREAM_CACHE_MB:-1536}" --ctx-size 4608 \
        --contexts "${STREAM_CONTEXTS:-512}" -n 64 --decode-tokens "${STREAM_INPUTS:-random}" --json 2>&1 \
        | sed "s/^{/{\"stream_graph\":$sg,/" | tee -a "$out/stream.jsonl"
      done
      ;;
    ncu-gemv)  # one launch of each GEMV benchmark in NCU_FILTER under ncu: throughput, occupancy, stalls, to ncu-gemv.txt
      LMLAB_CUDA_GRAPH=0 timeout 240 "$ncu" --kernel-name regex:gemv_kernel --launch-skip 3 --launch-count "${NCU_COUNT:-1}" \
        "${ncu_sections[@]}" "$here/lmlab_bench" \
        --benchmark_filter="${NCU_FILTER:-BM_cuda_gemv/8b_lm_head/q4/n1}" --benchmark_min_time=0.01 \
        > "$out/ncu-gemv.txt" 2>&1
      grep -E "Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Stall|Issued Ipc|No Eligible|One or More" \
        "$out/ncu-gemv.txt" | head -40
      ;;
    ncu-sass)  # one launch of NCU_KERNEL in the lmlab_bench benchmark NCU_FILTER with source counters: the report
      # (NAME.ncu-rep) and every SASS instruction's executions and stall samples (sass.csv, or sass-NAME.csv), as the
      # sixteenth session read the TurboQuant decode's instruction mix (docs/cuda.md); NCU_NAME: the outputs' name
      # (default ncu-sass; several steps in one call each name theirs); NCU_SKIP: matching launches skipped first (3);
      # NCU_ARGS: more ncu arguments (e.g. "--warp-sampling-interval 0" for a short kernel); NCU_SECTIONS: more, e.g.
      # "--section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis" (shared-memory wavefronts, pipes);
      # sass-summary.txt (sass-NAME-summary.txt): ncu_sass_summary.py's digest (the device tool returns only a few
      # files: copy that one)
      name=${NCU_NAME:-ncu-sass}; sass=sass${NCU_NAME:+-$NCU_NAME}
      timeout "${NCU_TIMEOUT:-180}" "$ncu" --kernel-name "regex:${NCU_KERNEL:-tq_decode_warps}" \
        --launch-skip "${NCU_SKIP:-3}" --launch-count 1 ${NCU_ARGS:-} \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
        --section InstructionStats --section SourceCounters ${NCU_SECTIONS:-} --import-source no -f -o "$out/$name" \
        "$here/lmlab_bench" --benchmark_filter="${NCU_FILTER:-cuda_attention/8b/turbo/decode/40000/}" \
        --benchmark_min_time=0.01 > "$out/$name.log" 2>&1
      "$ncu" -i "$out/$name.ncu-rep" --page source --csv --print-source sass > "$out/$sass.csv" 2>&1
      python3 "$here/../scripts/ncu_sass_summary.py" "$out/$sass.csv" > "$out/$sass-summary.txt" 2>&1  # by opcode, stalls
      "$ncu" -i "$out/$name.ncu-rep" \
        | grep -E "Duration|Elapsed Cycles|Executed Instructions  |Warp Cycles Per Issued|Eligible Warps|Registers Per|Achieved Occ"
      # the stall reasons' shares of the PC samples (WarpStateStats), largest first
      "$ncu" -i "$out/$name.ncu-rep" --page raw --csv 2>/dev/null | python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
if len(rows) >= 3:
    st = [(float(v.replace(",", "") or 0), k) for k, v in zip(rows[0], rows[2])
          if k.startswith("smsp__pcsamp_warps_issue_stalled_") and not k.endswith("_not_issued")
          and v.replace(",", "").replace(".", "").isdigit()]
    tot = sum(v for v, _ in st) or 1
    print("stalls: " + ", ".join("%s %.1f%%" % (k[33:], 100 * v / tot) for v, k in sorted(st, reverse=True)[:9]))'
      ;;
    sanitize)  # compute-sanitizer's SAN_TOOLS (default racecheck synccheck) over the tests in SAN_FILTER, each for at
      # most SAN_TIMEOUT seconds (tools slow kernels 10-100x), its summary lines to stdout, the logs to sanitize-TOOL.log
      san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
      for tool in ${SAN_TOOLS:-racecheck synccheck}; do
        echo "== $tool"
        timeout "${SAN_TIMEOUT:-120}" "$san" --tool "$tool" "$here/lmlab_tests" \
          --gtest_filter="${SAN_FILTER:-CudaTurboQuant.TensorCoreDecode*}" > "$out/sanitize-$tool.log" 2>&1
        echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|Barrier|OK \]|FAILED" "$out/sanitize-$tool.log" | head -8
      done
      ;;
    kernels-*)  # mean time per launch of the kernels matching KERNELS inside SHAPE's decode at CTX positions
      # (KV_MODE), graphs off, ncu without its clock lock or cache flush (the times of a running decode): SKIP / COUNT
      # matching launches (e.g. KERNELS='tq_decode_warps|tq_merge' SKIP=0 COUNT=72: one step's 36 layers; an encode
      # runs in the prefill too: CTX=512 SKIP=72), to kernels-SHAPE.csv
      shape=${step#kernels-}
      ctx=${CTX:-40000}
      LMLAB_CUDA_GRAPH=0 timeout 240 "$ncu" --cache-control none --clock-control none \
        --kernel-name "regex:${KERNELS:?}" --launch-skip "${SKIP:-0}" --launch-count "${COUNT:-72}" \
        --metrics gpu__time_duration.sum --print-units base --csv "$here/lmlab" decode-bench \
        --model "$(synth_dir "$shape")" --device cuda --ctx-size $((ctx + 512)) --contexts "$ctx" -n 4 --warmup 0 \
        --kv-mode "${KV_MODE:-turbo}" > "$out/kernels-$shape.csv" 2> "$out/kernels-$shape.err"
      kernel_times "$out/kernels-$shape.csv"
      ;;
    ncu-decode-*)  # decode kernels matching NCU_KERNEL at NCU_CTX positions of SHAPE's synth under ncu, to ncu-decode.txt
      # (NCU_SKIP: launches of the matching kernels to skip first; a kernel prefill also runs needs the prefill's
      # chunks x layers, e.g. 2900 for the tiled kernel at 40K on the 36-layer 8B)
      shape=${step#ncu-decode-}
      ctx=${NCU_CTX:-16384}
      LMLAB_CUDA_GRAPH=0 timeout 300 "$ncu" --kernel-name "regex:${NCU_KERNEL:-^attention_kernel}" --launch-skip "${NCU_SKIP:-40}" \
        --launch-count "${NCU_COUNT:-2}" "${ncu_sections[@]}" "$here/lmlab" decode-bench \
        --model "$(synth_dir "$shape")" --device cuda --ctx-size $((ctx + 512)) --contexts "$ctx" -n 8 --warmup 0 \
        > "$out/ncu-decode.txt" 2>&1
      grep -E "attention|gemv|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Issued Ipc|No Eligible|Grid Size|Block Size" \
        "$out/ncu-decode.txt" | head -40
      ;;
    trace-*)  # SHAPE's decode with graphs on under Nsight Systems (graph nodes traced): the last TRACE_TAIL of the
      # kernels (steady decode, past the prefill) by name: time, share, count, mean; and the span they cover (kernel
      # time / span: how much of a step is gaps between kernels), to trace-SHAPE.txt
      shape=${step#trace-}; tctx=${TRACE_CTX:-512}
      nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys /opt/nvidia/nsight-systems*/*/bin/nsys 2>/dev/null | head -1)
      [ -n "$nsys" ] || { echo "no nsys on this machine"; continue; }
      LMLAB_CUDA_GRAPH=1 timeout 300 "$nsys" profile --cuda-graph-trace=node -t cuda -o /tmp/trace-$shape --force-overwrite true \
        "$here/lmlab" decode-bench --model "$(synth_dir "$shape")" --device cuda --ctx-size $((tctx + 512)) --contexts "$tctx" \
        -n "${TRACE_N:-128}" ${PROFILE_KV:+--kv-mode $PROFILE_KV} > "$out/trace-$shape.log" 2>&1
      "$nsys" stats --report cuda_gpu_trace --format csv --output /tmp/trace-$shape /tmp/trace-$shape.nsys-rep >/dev/null 2>&1
      python3 - /tmp/trace-${shape}_cuda_gpu_trace.csv "${TRACE_TAIL:-0.4}" <<'PY' | tee "$out/trace-$shape.txt"
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
rows = [r for r in rows if r.get("Name") and not r["Name"].startswith("[CUDA mem")]
rows.sort(key=lambda r: int(r["Start (ns)"]))
tail = rows[int(len(rows) * (1 - float(sys.argv[2]))):]
tot, cnt = collections.Counter(), collections.Counter()
for r in tail:
    n = r["Name"][:70]; tot[n] += int(r["Duration (ns)"]); cnt[n] += 1
s = sum(tot.values()); span = int(tail[-1]["Start (ns)"]) + int(tail[-1]["Duration (ns)"]) - int(tail[0]["Start (ns)"])
for n, t in tot.most_common(22): print(f"{t/1e3:10.1f} us {100*t/s:5.1f}% {cnt[n]:6d}x {t/cnt[n]/1e3:8.2f} us  {n}")
print(f"{s/1e3:.1f} us of kernels over a span of {span/1e3:.1f} us ({100*s/span:.1f}%), {len(tail)} kernels")
PY
      ;;
    synth-*) synth_dir "${step#synth-}" ;;  # e.g. `cuda_device.sh synth-moe &` while the tests run
    ab-*)  # AB_VAR's values AB_VALUES (default "0 1") alternated AB_REPS times (default 2) over SHAPE's decode, graphs
      # on, in one process order: decode tok/s @512 / @4096 per value, to ab.jsonl (an opt-in kernel against the default)
      shape=${step#ab-}; dir=$(synth_dir "$shape")
      for rep in $(seq "${AB_REPS:-2}"); do for v in ${AB_VALUES:-0 1}; do
        env "${AB_VAR:?AB_VAR names the variable}=$v" LMLAB_CUDA_GRAPH=1 timeout "${BENCH_TIMEOUT:-200}" "$here/lmlab" \
          decode-bench --model "$dir" --device cuda --ctx-size 4608 --contexts 512,4096 -n 64 --json 2>&1 \
          | sed "s/^{/{\"ab\":\"$AB_VAR=$v\",\"shape\":\"$shape\",/" | tee -a "$out/ab.jsonl" \
          | grep -o '"ab":"[^"]*"\|"context":[0-9]*,"decode_tok_s":[0-9.]*' | tr '\n' ' '; echo
      done; done
      ;;
    vs-*)  # this folder's lmlab against VS_DIR's (another packed folder, e.g. an earlier commit's, carried beside this
      # one: its own cuda_device.sh unpacks it) and against itself under each of VS_ENVS (e.g. "LMLAB_FUSED_NORMS=1"),
      # alternated VS_REPS times (default 2) over SHAPE's decode, graphs on: tok/s @512 / @4096, to vs.jsonl
      shape=${step#vs-}; dir=$(synth_dir "$shape")
      [ -n "${VS_DIR:-}" ] && bash "$VS_DIR/cuda_device.sh" > /dev/null 2>&1
      vs_one() {  # label folder env...
        local label=$1 bin=$2; shift 2
        env LD_LIBRARY_PATH="$bin/lib:${LD_LIBRARY_PATH#*:}" LMLAB_CUDA_GRAPH=1 "$@" timeout "${BENCH_TIMEOUT:-200}" \
          "$bin/lmlab" decode-bench --model "$dir" --device cuda --ctx-size 4608 --contexts 512,4096 -n 64 --json 2>&1 \
          | sed "s/^{/{\"vs\":\"$label\",\"shape\":\"$shape\",/" | tee -a "$out/vs.jsonl" \
          | grep -o '"context":[0-9]*,"decode_tok_s":[0-9.]*' | tr '\n' ' ' | sed "s|^|$shape $label: |"; echo
      }
      for rep in $(seq "${VS_REPS:-2}"); do
        [ -n "${VS_DIR:-}" ] && vs_one "$(basename "$VS_DIR")" "$VS_DIR"
        vs_one this "$here"
        for e in ${VS_ENVS:-}; do vs_one "$e" "$here" "$e"; done
      done
      ;;
    kv-*)
      shape=${step#kv-}
      for mode in ${KV_MODES:-f16 turbo}; do timeout "${KV_TIMEOUT:-280}" "$here/lmlab" decode-bench --model "$(synth_dir "$shape")" --device cuda \
        --ctx-size "${KV_CTX:-16448}" --contexts "${KV_CONTEXTS:-4096,16384}" -n "${KV_N:-64}" --kv-mode $mode ${PREFILL_SIZE:+--prefill-size $PREFILL_SIZE} \
        --json 2>&1 | sed "s/^{/{\"shape\":\"$shape\",\"prefill_size\":${PREFILL_SIZE:-512},/" | tee -a "$out/kv.jsonl"; done
      ;;
    bench-* | profile-*)
      shape=${step#*-}
      dir=$(synth_dir "$shape")
      if [ "${step%%-*}" = profile ]; then
          # PROFILE_CTX: the decode's context (512; a long one needs SKIP past its prefill's launches, ~15 per layer
          # and chunk); PROFILE_KV: --kv-mode (e.g. turbo); PREFILL_SIZE: the prompt's chunk (e.g. PROFILE_CTX=2048
          # PREFILL_SIZE=2048 SKIP=0: the kernels of one 2048-token chunk)
          pctx=${PROFILE_CTX:-512}
          # PROFILE_GRAPH=1: the decode replays its graph and ncu profiles each kernel node (the kernels a graph decode
          # runs: e.g. the tiled attention for the 4096 bound, which a decode without graphs does not take)
          LMLAB_CUDA_GRAPH=${PROFILE_GRAPH:-0} timeout 300 "$ncu" --graph-profiling node --launch-skip "${SKIP:-4000}" --launch-count "${COUNT:-800}" \
          --metrics gpu__time_duration.sum --print-units base --csv "$here/lmlab" decode-bench --model "$dir" --device cuda \
          --ctx-size $((pctx + 512)) --contexts "$pctx" -n 32 --warmup 0 ${PROFILE_KV:+--kv-mode $PROFILE_KV} \
          ${PREFILL_SIZE:+--prefill-size $PREFILL_SIZE} \
          > "$out/profile-$shape.csv" 2> "$out/profile-$shape.err"
        kernel_times "$out/profile-$shape.csv"
        continue
      fi
      for g in ${GRAPHS:-1 0}; do LMLAB_CUDA_GRAPH=$g timeout ${BENCH_TIMEOUT:-200} "$here/lmlab" decode-bench --model "$dir" --device cuda \
        --ctx-size 4608 --contexts 512,4096 -n 64 --json 2>&1 | sed "s/^{/{\"graph\":$g,\"chained\":${LMLAB_CUDA_CHAINED:-1},\"shape\":\"$shape\",/" \
        | tee -a "$out/bench.jsonl"; done
      ;;
  esac
done
