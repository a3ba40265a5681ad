#!/usr/bin/env python3
"""The GPU's clocks, power and temperature through each marked run of a device call.

Usage: clock_digest.py SMI_CSV MARKS
SMI_CSV: `nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader
-lms 200` output; MARKS: lines "mark EPOCH_SECONDS WHAT WHICH" before each run and "mark EPOCH_SECONDS end" after it.
The decode is each run's last seconds, so the last 1.6 s of the SM clock stand beside the whole run's.
"""
import datetime
import statistics as st
import sys


def main(smi_csv, marks_file):
    rows = []
    for line in open(smi_csv):
        p = [x.strip() for x in line.split(',')]
        try:
            t = datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            rows.append((t, *(float(x.split()[0]) for x in p[1:5])))
        except (ValueError, IndexError):
            pass
    marks = [line.split() for line in open(marks_file)]
    for a, b in zip(marks, marks[1:]):
        if a[2] == 'end':
            continue
        w = [r for r in rows if float(a[1]) <= r[0] <= float(b[1])]
        if w:
            print(f"{a[2]:6s} {a[3]:>14s}: SM MHz min / median {min(r[1] for r in w):.0f} / "
                  f"{st.median(r[1] for r in w):.0f}, last 1.6 s {st.median(r[1] for r in w[-8:]):.0f}; "
                  f"memory MHz {st.median(r[2] for r in w):.0f}; power max {max(r[3] for r in w):.0f} W; "
                  f"temperature max {max(r[4] for r in w):.0f} C")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
