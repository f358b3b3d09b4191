"""Where a kernel's warps stall, per SASS instruction, from Nsight Compute's source page (NOTES v95: the
d128 backward's scalar LSE loads, queued in the MIO pipe behind the GEMMs' operand reads, were found
this way; the step model had not seen them).

On the GPU host (ncu is in /usr/local/cuda/bin there, not on this repository's build machine):

    ncu --set full -k regex:distca_attn_bwd_ws_bf16_d128 --launch-count 1 -o X \\
        python3 native/bench/profile_one.py --fatbin F --hd 128 --seq 16384
    ncu --import X.ncu-rep --page source --csv --print-source sass > X_sass.csv   (gzip it to carry it back)

then anywhere:

    python3 native/bench/ncu_stalls.py X_sass.csv[.gz] [--top 40] [--executed N] [--around I [--width W]]
    python3 native/bench/ncu_stalls.py --self-test   (run by NativeBenchToolsTest)

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


def summarize(header, rows, executed=None, top=40):
    """{"total", "reasons" (Counter), "chosen" (indices), "chosen_samples", "top" (indices by samples,
    in program order), "value" (row, column name) -> float, "reasons_of" (row) -> [(samples, reason)]}"""
    col = {h: i for i, h in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "(Not Issued)" not in h]

    def value(row, name):
        return number(row[col[name]])

    by_reason = collections.Counter()
    for r in rows:
        for k in reasons:
            by_reason[k] += value(r, k)
    chosen = [i for i, r in enumerate(rows) if executed is None or value(r, EXECUTED) == executed]
    return {
        "total": sum(value(r, SAMPLES) for r in rows),
        "reasons": by_reason,
        "chosen": chosen,
        "chosen_samples": sum(value(rows[i], SAMPLES) for i in chosen),
        "top": sorted(sorted(chosen, key=lambda i: -value(rows[i], SAMPLES))[:top]),
        "value": value,
        "reasons_of": lambda r: sorted(((value(r, k), k) for k in reasons), reverse=True),
        "source": lambda r: r[col["Source"]].strip(),
    }


SAMPLE = '''"Kernel Name","k",
"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed","stall_mio","stall_wait","stall_mio (Not Issued)"
"0x10","      LDS R2, [R0]","30","8","25","5","25"
"0x20","      FFMA R3, R2, R2, R1","12","8","0","12","0"
"0x30","      @!P0  BRA 0x10","7","2","0","7","0"
'''


def self_test():
    import os
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(SAMPLE)
    try:
        header, rows = read(f.name)
    finally:
        os.unlink(f.name)
    assert len(rows) == 3, rows
    s = summarize(header, rows, executed=8, top=1)
    assert s["total"] == 49, s["total"]
    assert s["reasons"]["stall_mio"] == 25 and s["reasons"]["stall_wait"] == 24, s["reasons"]
    assert "stall_mio (Not Issued)" not in s["reasons"]
    assert s["chosen"] == [0, 1] and s["chosen_samples"] == 42 and s["top"] == [0], s
    assert s["reasons_of"](rows[0])[0] == (25.0, "stall_mio") and s["source"](rows[0]) == "LDS R2, [R0]"
    print("ncu_stalls self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="?", help="ncu --page source --csv --print-source sass output (.csv or .csv.gz)")
    ap.add_argument("--top", type=int, default=40, help="instructions with the most samples")
    ap.add_argument("--executed", type=float, default=None, help="only instructions executed exactly this often")
    ap.add_argument("--around", type=int, default=None, help="print the instructions around this index")
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--self-test", action="store_true", help="check the parser and the sums on a sample, no ncu needed")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.csv:
        ap.error("the CSV is required")

    header, rows = read(args.csv)
    s = summarize(header, rows, args.executed, args.top)
    value, total = s["value"], s["total"]
    print(f"{len(rows)} instructions, {total:.0f} stall samples (all warps)")
    for k, v in s["reasons"].most_common():
        if v:
            print(f"  {k[len('stall_'):]:20s} {v:10.0f}  {100 * v / max(total, 1):5.1f}%")
    if args.executed is not None:
        print(f"executed {args.executed:.0f} times: {len(s['chosen'])} instructions, {s['chosen_samples']:.0f} "
              f"samples ({100 * s['chosen_samples'] / max(total, 1):.1f}%)")
    print(f"\n{'index':>6} {'samples':>8} {'executed':>10}  instruction | largest reasons")
    for i in s["top"]:
        r = rows[i]
        why = " ".join(f"{k[len('stall_'):]}={v:.0f}" for v, k in s["reasons_of"](r)[:2] if v)
        print(f"{i:6d} {value(r, SAMPLES):8.0f} {value(r, EXECUTED):10.0f}  {s['source'](r)[:72]} | {why}")

    if args.around is not None:
        print()
        for i in range(max(0, args.around - args.width), min(len(rows), args.around + args.width + 1)):
            r = rows[i]
            print(f"{i:6d} {value(r, SAMPLES):8.0f} {value(r, EXECUTED):10.0f}  {s['source'](r)[:90]}")


if __name__ == "__main__":
    sys.exit(main())
