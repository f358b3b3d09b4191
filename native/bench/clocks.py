"""The GPU's SM clock and power draw while one shape runs back to back, next to its TFLOP/s: whether a
shape that runs slower than another (e.g. the forward at 128K tokens against 32K) runs at lower
clocks (the power cap) or at the same clocks. nvidia-smi samples the clocks every 50 ms in the
background; each phase runs one shape for --seconds after a warm-up and reports the medians of its
samples. Phases alternate shapes for --rounds rounds.

Usage: python3 native/bench/clocks.py [--fatbin F] [--seqs 32768,131072] [--hd 128] [--causal]
                                       [--pass fwd|bwd] [--seconds 4] [--rounds 2] [--cudnn]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours, TorchSDPA  # noqa: E402
from distca_host import DEFAULT_FATBIN, Kernels, Slice, forward_flops  # noqa: E402


def sampler(path):
    """nvidia-smi writing 'epoch_ms, sm MHz, W' lines to path every 50 ms (a Popen)."""
    cmd = ["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw", "--format=csv,noheader,nounits", "-lms", "50"]
    return subprocess.Popen(cmd, stdout=open(path, "w"), stderr=subprocess.DEVNULL)


def read_samples(path):
    """(wall seconds, MHz, W) per sample; nvidia-smi's timestamp is local time 'YYYY/MM/DD HH:MM:SS.mmm'."""
    out = []
    for line in open(path):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            stamp = time.mktime(time.strptime(parts[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
            stamp += int(parts[0].split(".")[1]) / 1000 if "." in parts[0] else 0
            out.append((stamp, float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fatbin", default=DEFAULT_FATBIN)
    ap.add_argument("--seqs", default="32768,131072")
    ap.add_argument("--hd", type=int, default=128)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--pass", dest="pas", default="fwd", choices=("fwd", "bwd"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cudnn", action="store_true", help="also cuDNN (SDPA) on the same shapes (forward only)")
    args = ap.parse_args()
    kern = Kernels(args.fatbin)
    h = 2048 // args.hd
    runs = []
    for s in (int(x) for x in args.seqs.split(",")):
        b = max(1, 16384 // s)
        slices = [Slice(i, 0, s, s, args.causal) for i in range(b)]
        ours = Ours(kern, [s] * b, slices, h, h, args.hd)
        flops = forward_flops(slices, h, args.hd) * (2.5 if args.pas == "bwd" else 1.0)
        runs.append((f"ours {s}", getattr(ours, args.pas), flops))
        if args.cudnn and args.pas == "fwd":
            runs.append((f"cudnn {s}", TorchSDPA(b, s, h, args.hd, args.causal, "cudnn").fwd, flops))
    path = tempfile.mktemp(suffix=".csv")
    proc = sampler(path)
    phases = []
    try:
        time.sleep(0.5)
        for r in range(args.rounds):
            for name, fn, flops in runs:
                for _ in range(2):
                    fn()
                torch.cuda.synchronize()
                start, calls = time.time(), 0
                ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                ev0.record()
                while time.time() - start < args.seconds:
                    fn()
                    calls += 1
                    if calls % 4 == 0:
                        torch.cuda.synchronize()
                ev1.record()
                torch.cuda.synchronize()
                end = time.time()
                tflops = flops * calls / (ev0.elapsed_time(ev1) / 1e3) / 1e12
                phases.append((r, name, start + 0.5, end, tflops, calls))
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait()
    samples = read_samples(path)
    os.unlink(path)
    print(f"clocks.py: GPU {torch.cuda.get_device_name()}, {args.pas}, d{args.hd}, "
          f"{'causal' if args.causal else 'non-causal'}, b*s = 16K (one sequence beyond)")
    for r, name, t0, t1, tflops, calls in phases:
        inside = [(mhz, w) for t, mhz, w in samples if t0 <= t <= t1]
        if not inside:
            print(f"  round {r} {name:14s} {tflops:7.1f} TFLOP/s  ({calls} calls; no clock samples)")
            continue
        mhz = statistics.median(m for m, _ in inside)
        w = statistics.median(x for _, x in inside)
        print(f"  round {r} {name:14s} {tflops:7.1f} TFLOP/s  SM clock median {mhz:6.0f} MHz (min {min(m for m, _ in inside):.0f})"
              f"  power median {w:6.1f} W  ({len(inside)} samples, {calls} calls)")
    if not samples:
        print("  (nvidia-smi gave no samples)")


if __name__ == "__main__":
    main()
