"""Runs one forward and one backward launch of one shape, for profilers (ncu) and SASS dumps.

Usage: python3 native/bench/profile_one.py [--hd 128] [--seq 4096] [--causal] [--fatbin PATH]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours  # noqa: E402
from distca_host import DEFAULT_FATBIN, Kernels, Slice  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fatbin", default=DEFAULT_FATBIN)
    ap.add_argument("--hd", type=int, default=128)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--causal", action="store_true")
    args = ap.parse_args()
    kern = Kernels(args.fatbin)
    b, h = 16384 // args.seq, 2048 // args.hd
    ours = Ours(kern, [args.seq] * b, [Slice(i, 0, args.seq, args.seq, args.causal) for i in range(b)], h, h, args.hd)
    ours.fwd()
    ours.bwd()
    torch.cuda.synchronize()
    print("profile_one: done")


if __name__ == "__main__":
    main()
