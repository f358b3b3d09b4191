"""Runs one forward and one backward of one workload, for profilers (ncu) and SASS dumps.

Workloads: uniform (b*s = 16K tokens, h*d = 2048, as in bench.py's uniform section), rebatch
(bench.py's shard batch, or the long sequence of the same FLOPs with --long), or mix (--mix: causal
documents of those lengths, repeated to 16K tokens as in ab.py). --fa2 runs PyTorch's
FlashAttention-2 on the same shape instead of our kernels (uniform only).

Usage: python3 native/bench/profile_one.py [--hd 128] [--seq 4096] [--causal] [--workload uniform|rebatch]
                                            [--long] [--fa2] [--fatbin PATH] [--heads HQ/HKV] [--bwd-splits N]
                                            [--no-chunks] [--workload mix --mix L1,L2,...] [--work-bands auto|off|always]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours, TorchFA2, rebatch_sides  # noqa: E402
from ab import cases  # noqa: E402
from distca_host import DEFAULT_FATBIN, Kernels, Slice  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fatbin", default=DEFAULT_FATBIN)
    ap.add_argument("--hd", type=int, default=128)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--workload", choices=("uniform", "rebatch", "mix"), default="uniform")
    ap.add_argument("--mix", default=None, help="mix: L1,L2,... causal document lengths, repeated to 16K tokens")
    ap.add_argument("--work-bands", choices=("auto", "off", "always"), default="auto",
                    help="Kernels.work_bands (distca_attn.h section 11)")
    ap.add_argument("--long", action="store_true", help="rebatch: the long sequence of the same FLOPs")
    ap.add_argument("--fa2", action="store_true", help="uniform: PyTorch FlashAttention-2 instead of ours")
    ap.add_argument("--heads", default=None, help="HQ/HKV: uniform, ours, with grouped-query heads")
    ap.add_argument("--bwd-splits", type=int, default=None, help="Kernels.bwd_splits (distca_host.py --bwd-splits)")
    ap.add_argument("--no-chunks", action="store_true", help="Kernels.bwd_chunks=False (distca_attn.h section 10)")
    args = ap.parse_args()
    h = 2048 // args.hd
    hq, hkv = (int(x) for x in args.heads.split("/")) if args.heads else (h, h)
    kernels = Kernels(args.fatbin, bwd_splits=args.bwd_splits, bwd_chunks=not args.no_chunks,
                      work_bands={"auto": True, "off": False, "always": "always"}[args.work_bands])
    if args.workload == "uniform":
        b = 16384 // args.seq
        if args.fa2:
            run = TorchFA2([args.seq] * b, h, args.hd, args.causal)
        else:
            run = Ours(kernels, [args.seq] * b,
                       [Slice(i, 0, args.seq, args.seq, args.causal) for i in range(b)], hq, hkv, args.hd)
    elif args.workload == "mix":
        _, seg_lens, slices, _, _ = cases([], args.hd, heads=(hq, hkv), mixes=[[int(x) for x in args.mix.split(",")]])[0]
        run = Ours(kernels, seg_lens, slices, hq, hkv, args.hd)
    else:
        _, seg_lens, slices = rebatch_sides(h, args.hd)[1 if args.long else 0]
        run = Ours(kernels, seg_lens, slices, h, h, args.hd)
    run.fwd()
    run.bwd()
    torch.cuda.synchronize()
    print("profile_one: done")


if __name__ == "__main__":
    main()
