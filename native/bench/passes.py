"""Where the backward's time goes between its main kernel and the two elementwise passes (bwd_pre:
D = rowsum(dO * O) and the zeroing of the fp32 dQ workspace; bwd_post: dQ = scale * workspace), on
the rebatching shard batch (bench.py's, cuts on the 128 grid) and on the long sequence of the same
FLOPs. The passes stream every query row, so the shards (about 4x the rows of the long sequence for
the same FLOPs) pay them about 4x per FLOP. Prints, timed interleaved: the whole backward, each pass
alone with the bandwidth it reaches (bytes it must move / time), and a device-to-device copy of the
fp32 workspace as the attainable bandwidth.

Usage: python3 native/bench/passes.py [--fatbin PATH] [--reps 30]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours, rebatch_sides, time_interleaved  # noqa: E402
from distca_host import DEFAULT_FATBIN, Kernels  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fatbin", default=DEFAULT_FATBIN)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    kern = Kernels(args.fatbin)
    h, hd = 16, 128
    print(f"passes.py: GPU {torch.cuda.get_device_name()}; d{hd}, h{h}, bf16")
    for name, segs, sl in rebatch_sides(h, hd):
        ours = Ours(kern, segs, sl, h, h, hd)
        src = ours.acc.view(-1)
        dst = torch.empty_like(src)
        whole, pre, post, copy = time_interleaved(
            [ours.bwd, lambda: ours.bwd("pre"), lambda: ours.bwd("post"), lambda: dst.copy_(src)], args.reps)
        n = ours.lay.total_q * h * hd  # dQ elements
        # pre reads O and dO (2 + 2 bytes) and zeroes the fp32 workspace (4); post reads it (4), writes dQ (2)
        tbs = lambda nbytes, ms: nbytes / ms / 1e9
        print(f"{name:14s} rows {ours.lay.total_q:6d}  backward {whole:.3f} ms  "
              f"bwd_pre {pre:.3f} ms ({tbs(8 * n, pre):.2f} TB/s)  bwd_post {post:.3f} ms ({tbs(6 * n, post):.2f} TB/s)  "
              f"fp32 copy {copy:.3f} ms ({tbs(8 * n, copy):.2f} TB/s)  passes/backward {(pre + post) / whole:.3f}")


if __name__ == "__main__":
    main()
