# Summarises an ncu `--page source --csv --print-source sass` export (cuda_device.sh ncu-sass's sass.csv): executed
# instructions and stall samples by opcode, and the 40 lines with the most stall samples. Usage: python3
# ncu_sass_summary.py sass.csv
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr_i = next((i for i, r in enumerate(rows) if any("Source" == c.strip() for c in r)), None)
if hdr_i is None:
    sys.exit("%s: no SASS table (a header row with a Source column)" % sys.argv[1])
hdr = [c.strip() for c in rows[hdr_i]]
def col(name):
    for i, c in enumerate(hdr):
        if c == name: return i
    for i, c in enumerate(hdr):
        if name.lower() in c.lower(): return i
    return None
src, ex, st = col("Source"), col("Instructions Executed"), col("Warp Stall Sampling (All Samples)")
print("columns:", hdr[:12])
def num(x):
    try: return float(x.replace(",", ""))
    except: return 0.0
by_op_ex, by_op_st, lines = collections.Counter(), collections.Counter(), []
for r in rows[hdr_i + 1:]:
    if len(r) <= max(src, ex, st or 0): continue
    s = r[src].strip(); toks = s.split()
    if not toks: continue
    op = toks[1] if toks[0].startswith("@") and len(toks) > 1 else toks[0]
    op = op.split(".")[0]
    e, w = num(r[ex]), num(r[st]) if st is not None else 0
    by_op_ex[op] += e; by_op_st[op] += w; lines.append((w, e, s))
tot_e, tot_s = sum(by_op_ex.values()), sum(by_op_st.values()) or 1
print("total executed %.3g, stall samples %.3g" % (tot_e, tot_s))
for op, e in by_op_ex.most_common(30): print("%-10s exec %5.1f%%  stall %5.1f%%" % (op, 100 * e / tot_e, 100 * by_op_st[op] / tot_s))
print("-- top stall lines")
for w, e, s in sorted(lines, reverse=True)[:40]: print("%6.2f%% %10.0f  %s" % (100 * w / tot_s, e, s[:90]))
