#!/usr/bin/env python3
"""lmlab beside llama.cpp (../shared/peers/bin/llama-bench) on the same shapes, in one interleaved run.

Rows (issue 15's table; --rows picks a subset):
  coder-dense   the trained fixture, bf16; GGUF twin ../shared/peers/gguf/coder-dense-bf16.gguf
  qwen3-bf16    `lmlab synth --arch qwen3 --preset qwen3-8b --scale 0.5 --bits 16` (0.89 B parameters, 1.77 GB);
                GGUF twin written by the peers' hf_to_gguf.py
  qwen3-q4      the same shape, lmlab MLX 4-bit g64 (`synth --bits 4 --group-size 64`) against llama.cpp Q4_0 of the
                bf16 twin (llama-quantize): 0.50 GB each
  turbo         coder-dense decode at --turbo-context tokens: lmlab's TurboQuant KV against llama.cpp's q4_0 KV
                (flash attention on) and, for reference, its f16 KV
Each round measures every row on both engines, alternating which goes first; a row's prefill is --prompt tokens
from an empty cache, its decode --gen steps after a --prompt-token context (llama-bench -d). The table gives
min-max over the rounds; a ratio is lmlab / llama.cpp per round (both measured back to back), min-max.
Both engines warm up before timing: llama-bench by default, lmlab by --lmlab-warmup untimed runs in the same
decode-bench process (default 1). Missing models are made under --work (once; later runs reuse them). Load matters on a shared machine: the
script prints `uptime` before and after; see docs/measurements.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None):
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return res.stdout


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"no JSON line in output:\n{text[-2000:]}")


class Engines:
    def __init__(self, a):
        self.a = a
        self.bench = os.path.join(a.peers, "bin", "llama-bench")

    def lmlab(self, model, context, gen, kv_mode="f32"):
        """(prefill tok/s of `context` tokens, decode tok/s of `gen` steps at that context)."""
        # --lmlab-warmup untimed runs first, in the same process (the last context's line is the one read), as
        # llama-bench warms up before it times.
        contexts = ",".join([str(context)] * (1 + self.a.lmlab_warmup))
        out = run([self.a.lmlab, "decode-bench", "--model", model, "--contexts", contexts, "-n", str(gen),
                   "--threads", str(self.a.threads), "--kv-mode", kv_mode, "--json"])
        j = last_json(out)
        return j["prefill_tok_s"], j["decode_tok_s"]

    def llama(self, gguf, prompt, gen, depth, extra=()):
        """llama-bench: tok/s of a `prompt`-token prefill (gen == 0) or of `gen` decode steps at `depth`."""
        out = run([self.bench, "-m", gguf, "-t", str(self.a.threads), "-r", "1", "-p", str(prompt), "-n", str(gen),
                   "-d", str(depth), "-o", "jsonl", *extra])
        return last_json(out)["avg_ts"]

    def llama_pp_tg(self, gguf, prompt, gen, extra=()):
        return self.llama(gguf, prompt, 0, 0, extra), self.llama(gguf, 0, gen, prompt, extra)


def prepare(a):
    """Model paths per row, making the synth models and GGUF twins that are missing."""
    fixtures = os.path.join(ROOT, "..", "shared", "fixtures", "models")
    os.makedirs(a.work, exist_ok=True)
    bf16 = os.path.join(a.work, "qwen3-0.9b-bf16")
    q4 = os.path.join(a.work, "qwen3-0.9b-4bit")
    gguf16 = os.path.join(a.work, "qwen3-0.9b-bf16.gguf")
    gguf4 = os.path.join(a.work, "qwen3-0.9b-q4_0.gguf")
    shape = ["--arch", "qwen3", "--preset", "qwen3-8b", "--scale", "0.5", "--quiet"]
    rows = set(a.rows)
    if rows & {"qwen3-bf16", "qwen3-q4"}:
        if not os.path.exists(os.path.join(bf16, "config.json")):
            log(f"synth {bf16}")
            run([a.lmlab, "synth", *shape, "--bits", "16", "--out", bf16])
        if not os.path.exists(gguf16):
            log(f"hf_to_gguf {gguf16}")
            env = dict(os.environ, PYTHONPATH=os.path.join(a.peers, "gguf-py"))
            run(["/usr/bin/python3", os.path.join(a.peers, "hf_to_gguf.py"), bf16, gguf16], env=env)
    if "qwen3-q4" in rows:
        if not os.path.exists(os.path.join(q4, "config.json")):
            log(f"synth {q4}")
            run([a.lmlab, "synth", *shape, "--bits", "4", "--group-size", "64", "--out", q4])
        if not os.path.exists(gguf4):
            log(f"llama-quantize {gguf4}")
            run([os.path.join(a.peers, "bin", "llama-quantize"), gguf16, gguf4, "q4_0"])
    dense = os.path.join(fixtures, "coder-dense")
    dense_gguf = os.path.join(a.peers, "gguf", "coder-dense-bf16.gguf")
    return {
        "coder-dense": ("coder-dense (5.8M, bf16)", dense, dense_gguf),
        "qwen3-bf16": ("qwen3 synth 0.9B bf16 (1.77 GB)", bf16, gguf16),
        "qwen3-q4": ("same, lmlab MLX 4-bit g64 vs Q4_0 (0.50 GB each)", q4, gguf4),
        "turbo": (f"TurboQuant KV vs llama.cpp q4_0 KV, coder-dense at {a.turbo_context // 1024}K context", dense,
                  dense_gguf),
    }


def measure_row(e, a, row, paths, lmlab_first):
    _, model, gguf = paths
    if row == "turbo":
        steps = [("lmlab", lambda: e.lmlab(model, a.turbo_context, a.turbo_gen, "turbo")[1]),
                 ("llama", lambda: e.llama(gguf, 0, a.turbo_gen, a.turbo_context, ["-ctk", "q4_0", "-ctv", "q4_0", "-fa", "on"])),
                 ("llama_f16", lambda: e.llama(gguf, 0, a.turbo_gen, a.turbo_context, ["-fa", "on"]))]
    else:
        steps = [("lmlab", lambda: e.lmlab(model, a.prompt, a.gen)),
                 ("llama", lambda: e.llama_pp_tg(gguf, a.prompt, a.gen))]
    if not lmlab_first:
        steps.reverse()
    return {name: fn() for name, fn in steps}


def num(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def rng(values, fmt=None):
    f = (lambda v: fmt.format(v)) if fmt else num
    lo, hi = f(min(values)), f(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def table(a, paths, samples):
    lines = ["| model | lmlab decode / prefill tok/s | llama.cpp decode / prefill | ratio decode / prefill |",
             "|---|---|---|---|"]
    for row in a.rows:
        s = samples[row]
        label = paths[row][0]
        if row == "turbo":
            lm = [x["lmlab"] for x in s]
            q4 = [x["llama"] for x in s]
            f16 = [x["llama_f16"] for x in s]
            r_q4 = [x["lmlab"] / x["llama"] for x in s]
            r_f16 = [x["lmlab"] / x["llama_f16"] for x in s]
            lines.append(f"| {label} | {rng(lm)} | {rng(q4)} (f16 KV: {rng(f16)}) | "
                         f"{rng(r_q4, '{:.2f}')}x ({rng(r_f16, '{:.2f}')}x vs f16) |")
            continue
        dec = [x["lmlab"][1] for x in s]
        pre = [x["lmlab"][0] for x in s]
        ldec = [x["llama"][1] for x in s]
        lpre = [x["llama"][0] for x in s]
        rdec = [x["lmlab"][1] / x["llama"][1] for x in s]
        rpre = [x["lmlab"][0] / x["llama"][0] for x in s]
        lines.append(f"| {label} | {rng(dec)} / {rng(pre)} | {rng(ldec)} / {rng(lpre)} | "
                     f"{rng(rdec, '{:.2f}')}x / {rng(rpre, '{:.2f}')}x |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmlab", default=os.path.join(ROOT, "build", "cli", "lmlab"))
    p.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "peers"))
    p.add_argument("--work", default="/tmp/lmlab-side-by-side", help="where synth models and GGUF twins are kept")
    p.add_argument("--rows", default="coder-dense,qwen3-bf16,qwen3-q4,turbo")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=512, help="prefill tokens, and the context of the decode steps")
    p.add_argument("--gen", type=int, default=64, help="decode steps timed")
    p.add_argument("--turbo-context", type=int, default=16384)
    p.add_argument("--turbo-gen", type=int, default=32)
    p.add_argument("--lmlab-warmup", type=int, default=1,
                   help="untimed lmlab runs of each measurement before the timed one, in the same process "
                        "(llama-bench warms up by default; 0: time lmlab's first prefill, cold: page faults of the "
                        "mapped weights, buffers growing)")
    a = p.parse_args()
    a.rows = [r for r in a.rows.split(",") if r]
    paths = prepare(a)
    for r in a.rows:
        if r not in paths:
            raise SystemExit(f"--rows: unknown row '{r}' ({', '.join(paths)})")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    up0 = run(["uptime"]).strip()
    samples = {r: [] for r in a.rows}
    t0 = time.time()
    for i in range(a.rounds):
        for j, r in enumerate(a.rows):
            log(f"round {i + 1}/{a.rounds}: {r}")
            samples[r].append(measure_row(Engines(a), a, r, paths[r], (i + j) % 2 == 0))
    up1 = run(["uptime"]).strip()
    print(f"lmlab {commit} vs llama.cpp (llama-bench), {a.threads} threads, {a.rounds} interleaved rounds, "
          f"prefill {a.prompt} tokens, decode {a.gen} steps at {a.prompt} context, lmlab warm-up runs "
          f"{a.lmlab_warmup}; {time.time() - t0:.0f} s")
    print(f"uptime before: {up0}\nuptime after:  {up1}\n")
    print(table(a, paths, samples))
    if os.environ.get("SIDE_BY_SIDE_RAW"):
        print(json.dumps(samples))


if __name__ == "__main__":
    main()
