"""Where the backward's time goes between its main kernel and the two elementwise passes (bwd_pre:
D = rowsum(dO * O), and the zeroing of the fp32 dQ workspace with --no-dq-claims (else the main
kernel zeroes it: distca_attn.h section 8); bwd_post: dQ = scale * workspace), on
the rebatching shard batch (bench.py's, cuts on the 128 grid) and on the long sequence of the same
FLOPs. The passes stream every query row, so the shards (about 4x the rows of the long sequence for
the same FLOPs) pay them about 4x per FLOP. Prints, timed interleaved: the whole backward, each pass
alone with the bandwidth it reaches (bytes it must move / time), and a device-to-device copy of the
fp32 workspace as the attainable bandwidth.

Usage: python3 native/bench/passes.py [--fatbin PATH] [--reps 30] [--no-dq-claims] (and check.py's other
kernel options)
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours, rebatch_sides, time_interleaved  # noqa: E402
from distca_host import add_kernel_arguments, kernels_from_args  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    add_kernel_arguments(ap)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    kern = kernels_from_args(args)
    h, hd = 16, 128
    pre_bytes = 4 if kern.uses_dq_claims(hd) else 8  # O and dO (2 + 2), and the zeroes (4)
    print(f"passes.py: GPU {torch.cuda.get_device_name()}; d{hd}, h{h}, bf16")
    for name, segs, sl in rebatch_sides(h, hd):
        ours = Ours(kern, segs, sl, h, h, hd)
        src = ours.acc.view(-1)
        dst = torch.empty_like(src)
        # post runs right after a whole backward, so that it finds the claim words (section 8) as the
        # main kernel leaves them
        pre, whole, post, copy = time_interleaved(
            [lambda: ours.bwd("pre"), ours.bwd, lambda: ours.bwd("post"), lambda: dst.copy_(src)], args.reps)
        n = ours.lay.total_q * h * hd  # dQ elements
        # pre reads O and dO (2 + 2 bytes) and may zero the fp32 workspace (4); post reads it (4), writes dQ (2)
        tbs = lambda nbytes, ms: nbytes / ms / 1e9
        print(f"{name:14s} rows {ours.lay.total_q:6d}  backward {whole:.3f} ms  "
              f"bwd_pre {pre:.3f} ms ({tbs(pre_bytes * n, pre):.2f} TB/s)  bwd_post {post:.3f} ms ({tbs(6 * n, post):.2f} TB/s)  "
              f"fp32 copy {copy:.3f} ms ({tbs(8 * n, copy):.2f} TB/s)  passes/backward {(pre + post) / whole:.3f}")


if __name__ == "__main__":
    main()
