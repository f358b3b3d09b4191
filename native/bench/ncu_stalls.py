"""Where a kernel's warps stall, per SASS instruction, from Nsight Compute's source page (NOTES v95: the
d128 backward's scalar LSE loads, queued in the MIO pipe behind the GEMMs' operand reads, were found
this way; the step model had not seen them).

On the GPU host (ncu is in /usr/local/cuda/bin there, not on this repository's build machine):

    ncu --set full -k regex:distca_attn_bwd_ws_bf16_d128 --launch-count 1 -o X \\
        python3 native/bench/profile_one.py --fatbin F --hd 128 --seq 16384
    ncu --import X.ncu-rep --page source --csv --print-source sass > X_sass.csv   (gzip it to carry it back)

then anywhere:

    python3 native/bench/ncu_stalls.py X_sass.csv[.gz] [--top 40] [--executed N] [--around I [--width W]]

Prints the samples by stall reason (all warps), the --top instructions by samples (index, samples,
times executed, the instruction, its two largest reasons) in program order, and with --executed N
only instructions executed exactly N times (one warp role's per-step code: in the persistent kernels
the consumers' step instructions share a count, the producer's another). --around I prints the
instructions I - W .. I + W with their samples, to read what a stalled instruction waits for (a
stall is charged to the instruction that cannot issue: a register's reuse waits for the loads that
still read it, a `@!P0 BRA` after a try-wait for the barrier).
"""
import argparse
import collections
import csv
import gzip
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def read(path):
    """(header, rows) of the source page's SASS table: the CSV's first line names the kernel, the
    second is the header."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    return rows[start], [r for r in rows[start + 1:] if len(r) == len(rows[start])]


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", help="ncu --page source --csv --print-source sass output (.csv or .csv.gz)")
    ap.add_argument("--top", type=int, default=40, help="instructions with the most samples")
    ap.add_argument("--executed", type=float, default=None, help="only instructions executed exactly this often")
    ap.add_argument("--around", type=int, default=None, help="print the instructions around this index")
    ap.add_argument("--width", type=int, default=20)
    args = ap.parse_args()

    header, rows = read(args.csv)
    col = {h: i for i, h in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "(Not Issued)" not in h]

    def value(row, name):
        return number(row[col[name]])

    def source(row):
        return row[col["Source"]].strip()

    total = sum(value(r, SAMPLES) for r in rows)
    by_reason = collections.Counter()
    for r in rows:
        for k in reasons:
            by_reason[k] += value(r, k)
    print(f"{len(rows)} instructions, {total:.0f} stall samples (all warps)")
    for k, v in by_reason.most_common():
        if v:
            print(f"  {k[len('stall_'):]:20s} {v:10.0f}  {100 * v / max(total, 1):5.1f}%")

    chosen = [i for i, r in enumerate(rows) if args.executed is None or value(r, EXECUTED) == args.executed]
    if args.executed is not None:
        part = sum(value(rows[i], SAMPLES) for i in chosen)
        print(f"executed {args.executed:.0f} times: {len(chosen)} instructions, {part:.0f} samples "
              f"({100 * part / max(total, 1):.1f}%)")
    top = sorted(chosen, key=lambda i: -value(rows[i], SAMPLES))[:args.top]
    print(f"\n{'index':>6} {'samples':>8} {'executed':>10}  instruction | largest reasons")
    for i in sorted(top):
        r = rows[i]
        largest = sorted(((value(r, k), k) for k in reasons), reverse=True)[:2]
        why = " ".join(f"{k[len('stall_'):]}={v:.0f}" for v, k in largest if v)
        print(f"{i:6d} {value(r, SAMPLES):8.0f} {value(r, EXECUTED):10.0f}  {source(r)[:72]} | {why}")

    if args.around is not None:
        print()
        for i in range(max(0, args.around - args.width), min(len(rows), args.around + args.width + 1)):
            r = rows[i]
            print(f"{i:6d} {value(r, SAMPLES):8.0f} {value(r, EXECUTED):10.0f}  {source(r)[:90]}")


if __name__ == "__main__":
    sys.exit(main())
