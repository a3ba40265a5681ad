#!/usr/bin/env python3
"""Aggregate decode throughput of `lmlab serve` with 1 and with N concurrent streams (issue 14's figure).

Starts `lmlab serve` on a free port, streams /v1/completions (ignore_eos, fixed max_tokens, greedy) from 1 client,
then from N clients at once, and prints per phase: completion tokens, wall time, aggregate tok/s (completion
tokens / time from the first request to the last [DONE]), decode tok/s (tokens after each stream's first, over
the span from the earliest first token to the latest last one) and p50 / p99 of the gaps between a stream's
chunks. Standard library only.

  python3 scripts/bench_batching.py --lmlab build/cli/lmlab --model /tmp/synth-q4-05 --streams 8 --tokens 64
"""
import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout_s=600):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"lmlab serve exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("lmlab serve did not become ready")


def stream(port, prompt, tokens, out):
    """One streaming completion; records the send time, each chunk's arrival time and the usage counts."""
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "ignore_eos": True, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    out["sent"] = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        out["error"] = f"HTTP {r.status}: {r.read()[:200]!r}"
        return
    chunks, usage = [], None
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        j = json.loads(line[6:])
        if j.get("usage"):
            usage = j["usage"]
        if j.get("choices") and j["choices"][0].get("text"):
            chunks.append(time.perf_counter())
    out["chunks"] = chunks
    out["done"] = time.perf_counter()
    out["completion_tokens"] = usage["completion_tokens"] if usage else len(chunks)


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def phase(port, n, tokens):
    results = [{} for _ in range(n)]
    threads = [threading.Thread(target=stream, args=(port, f"def function_{i}(x):\n    return", tokens, results[i]))
               for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        sys.exit(f"{len(errors)} of {n} streams failed: {errors[0]}")
    total = sum(r["completion_tokens"] for r in results)
    wall = max(r["done"] for r in results) - t0
    first = min(r["chunks"][0] for r in results)
    last = max(r["chunks"][-1] for r in results)
    decode_tokens = sum(r["completion_tokens"] - 1 for r in results)
    gaps = [(b - a) * 1000 for r in results for a, b in zip(r["chunks"], r["chunks"][1:])]
    return {"streams": n, "completion_tokens": total, "wall_s": round(wall, 2),
            "aggregate_tok_s": round(total / wall, 2),
            "decode_tok_s": round(decode_tokens / (last - first), 2) if last > first else float("nan"),
            "itl_p50_ms": round(percentile(gaps, 50), 1), "itl_p99_ms": round(percentile(gaps, 99), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lmlab", default="build/cli/lmlab")
    ap.add_argument("--model", required=True)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64, help="completion tokens per stream")
    ap.add_argument("--threads", type=int, default=0, help="--threads for lmlab serve (0: its default)")
    ap.add_argument("--warmup", type=int, default=8, help="tokens of a first, unmeasured request")
    args = ap.parse_args()
    port = free_port()
    cmd = [args.lmlab, "serve", "--model", args.model, "--port", str(port), "--parallel", str(args.streams),
           "--max-tokens", str(args.tokens)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        phase(port, 1, args.warmup)  # maps the weights in and warms the caches
        one = phase(port, 1, args.tokens)
        many = phase(port, args.streams, args.tokens)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    for r in (one, many):
        print(json.dumps(r))
    print(f"aggregate speedup {args.streams} vs 1: {many['aggregate_tok_s'] / one['aggregate_tok_s']:.2f}x "
          f"(decode {many['decode_tok_s'] / one['decode_tok_s']:.2f}x)")


if __name__ == "__main__":
    main()
