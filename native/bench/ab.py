"""A/B of two kernel images on the same inputs, timed interleaved (bench.time_interleaved): the
rebatching shard batch (cuts on the 128 grid), the long sequence of the same FLOPs, and uniform
causal shapes (b*s = 16K tokens, h*d = 2048; head dim 128, or 64 / 256 with --hd), forward and
backward (--full: the uniform shapes without causal mask). Prints each image's TFLOP/s and B/A
per case. Only the two images of one case are interleaved: for the fused/long rebatching ratio,
which compares cases, use bench.py (it interleaves the cases). Both images must hold an ABI that
distca_host.py launches (ABI_VERSIONS).

Usage: python3 native/bench/ab.py A.fatbin B.fatbin [C.fatbin ...] [--reps 30] [--seqs 512,2048,16384] [--rounds 2]
       [--passes fwd,bwd] [--hd 64|128|256] [--full] [--heads HQ/HKV]
An image given as F.fatbin:no-dq-claims runs with bwd_pre zeroing the dQ workspace (distca_attn.h
section 8), as F.fatbin:splits=N with the backward's group splits forced (N > 1), off (1) or as the
split kernel's whole-group work items (-1; section 9), as F.fatbin:no-chunks without the chunked
backward of section 10 (F.fatbin:chunks-always with it for every GQA group), as F.fatbin:split-policy=O,L,H[,P] with
schedule_policy.group_splits' overhead_steps O, pairs_steps (L, H) and pairs_max_pieces P (v64's policy: 2,0,0; v65's:
2,32,64,64), as F.fatbin:lean-dram=0|1 with group_splits' lean_dram forced (its default: whether the GPU
has less DRAM bandwidth per SM than schedule_policy.SPLIT_LEAN_DRAM_BYTES_PER_SM), as F.fatbin:uniform=0 with the
schedule model's split counts where group_splits would make them uniform (NOTES v70-v71; F.fatbin:short-uniform=0|1 its
short_uniform forced, F.fatbin:short-max=N its short_max_pieces, F.fatbin:l2-order=0 without l2_order_pieces' head-ordered splits, F.fatbin:head-order=1 with every
split list in head order, NOTES v79; F.fatbin:l2-order=narrow with v79's bounds of that rule, F.fatbin:short-wide=0|1
group_splits' short_wide forced, F.fatbin:block-m=N the cost model's backward step of N rows, NOTES v80), as F.fatbin:long-steps=K
with group_splits' long_steps_per_piece K (0: v71's pieces in groups over 32 heads; NOTES v72), as F.fatbin:bands=0
with the persistent kernels' work lists in section 5's order instead of section 11's bands (NOTES v73; F.fatbin:band-floor=X
with no cuts under X times the longest tile), so that one image can be
compared with itself. --heads HQ/HKV --shards: the rebatching shards with those heads too; --mix L1,L2,...
(repeatable): a varlen case of those document lengths repeated to 16K tokens (--seqs "" for the mixes only).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import Ours, rebatch_sides, tflops, time_interleaved  # noqa: E402
from distca_host import Kernels, Slice, forward_flops  # noqa: E402


def cases(seqs, hd, full=False, heads=None, shards=False, mixes=()):
    """(name, seg_lens, slices, heads_q, heads_kv); heads = (hq, hkv): the uniform shapes only (with
    shards, the rebatching sides too), GQA. mixes: document length lists, each a varlen case of those
    lengths repeated to 16K tokens (causal unless full)."""
    h = 2048 // hd
    hq, hkv = heads or (h, h)
    out = [] if heads and not shards else [(name, seg_lens, slices, hq, hkv) for name, seg_lens, slices in
                                           rebatch_sides(h, hd)]
    for s in seqs:
        b = max(1, 16384 // s)
        out.append((f"{'full' if full else 'causal'} {s}", [s] * b, [Slice(i, 0, s, s, not full) for i in range(b)],
                    hq, hkv))
    for mix in mixes:
        lens = []
        while sum(lens) + mix[len(lens) % len(mix)] <= 16384:
            lens.append(mix[len(lens) % len(mix)])
        out.append((f"mix {'/'.join(str(n) for n in mix)}"[:14], lens,
                    [Slice(i, 0, n, n, not full) for i, n in enumerate(lens)], hq, hkv))
    return out


def image(spec):
    """F.fatbin, optionally with options after colons: no-dq-claims, splits=N (Kernels.bwd_splits)."""
    path, *options = spec.split(":")
    kw = {}
    for option in options:
        if option == "no-dq-claims":
            kw["dq_claims"] = False
        elif option.startswith("splits="):
            kw["bwd_splits"] = int(option.split("=", 1)[1])
        elif option.startswith("bands="):  # section 11's work bands (0: never, section 5's order)
            kw["work_bands"] = option.split("=", 1)[1] == "1"
        elif option.startswith("band-factors="):  # work_bands' candidate factors, e.g. band-factors=2
            kw.setdefault("work_band_policy", {})["factors"] = tuple(float(x) for x in option.split("=", 1)[1].split("/"))
        elif option.startswith("band-most="):  # work_bands' most cuts
            kw.setdefault("work_band_policy", {})["most"] = int(option.split("=", 1)[1])
        elif option.startswith("band-floor="):  # work_bands' floor: no cuts under this fraction of the longest
            kw.setdefault("work_band_policy", {})["floor"] = float(option.split("=", 1)[1])
        elif option == "no-chunks":
            kw["bwd_chunks"] = False
        elif option == "chunks-always":
            kw["bwd_chunks"] = "always"
        elif option.startswith("split-policy="):  # overhead_steps,pairs_steps[,pairs_max_pieces] (v64: 2,0,0)
            o, lo, hi, *cap = (int(v) for v in option.split("=", 1)[1].split(","))
            kw.setdefault("bwd_split_policy", {}).update({"overhead_steps": o, "pairs_steps": (lo, hi)})
            if cap:
                kw["bwd_split_policy"]["pairs_max_pieces"] = cap[0]
        elif option.startswith("lean-dram="):  # group_splits' lean_dram forced (0 or 1)
            kw.setdefault("bwd_split_policy", {})["lean_dram"] = option.split("=", 1)[1] == "1"
        elif option.startswith("long-steps="):  # group_splits' long_steps_per_piece (0: v71's pieces)
            kw.setdefault("bwd_split_policy", {})["long_steps_per_piece"] = int(option.split("=", 1)[1])
        elif option.startswith("uniform="):  # group_splits' uniform (0: the model's counts where it splits)
            kw.setdefault("bwd_split_policy", {})["uniform"] = option.split("=", 1)[1] == "1"
        elif option == "l2-order=0":  # without schedule_policy.l2_order_pieces' rule (NOTES v79)
            kw["l2_order"] = False
        elif option == "l2-order=narrow":  # l2_order_pieces' v79 bounds alone (groups of 8-16 heads; NOTES v80)
            kw["l2_order"] = "narrow"
        elif option.startswith("short-wide="):  # group_splits' short_wide (NOTES v80)
            kw.setdefault("bwd_split_policy", {})["short_wide"] = option.split("=", 1)[1] == "1"
        elif option.startswith("block-m="):  # the cost model's backward step rows (Kernels' cost_block_m)
            kw["cost_block_m"] = int(option.split("=", 1)[1])
        elif option == "head-order=1":  # every split work list in head order, no bands (Kernels' l2_order "always")
            kw["l2_order"] = "always"
        elif option.startswith("short-max="):  # group_splits' short_max_pieces (default SPLIT_SHORT_MAX_PIECES)
            kw.setdefault("bwd_split_policy", {})["short_max_pieces"] = int(option.split("=", 1)[1])
        elif option.startswith("q128="):  # the head_dim 64 backward's 128-row steps (Kernels' bwd_q128)
            kw["bwd_q128"] = option.split("=", 1)[1]
        elif option.startswith("short-uniform="):  # group_splits' short_uniform (default: from the head dim)
            kw.setdefault("bwd_split_policy", {})["short_uniform"] = option.split("=", 1)[1] == "1"
        else:
            raise SystemExit(f"ab.py: unknown image option {option!r} in {spec!r} (known: no-dq-claims, splits=N,"
                             " no-chunks, chunks-always, split-policy=O,L,H[,P], lean-dram=0|1, uniform=0|1, long-steps=K,"
                             " short-uniform=0|1, short-max=N, q128=auto|always|never, short-wide=0|1, block-m=N, l2-order=0|narrow, head-order=1, bands=0|1, band-floor=X, band-factors=F1/F2,"
                             " band-most=K)")
    return Kernels(path, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b", nargs="+", help="one image or more, each timed against A (interleaved with A and each other)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seqs", default="512,2048,16384")
    ap.add_argument("--passes", default="fwd,bwd", help="which passes to time (fwd, bwd or both)")
    ap.add_argument("--hd", type=int, default=128, choices=(64, 128, 256), help="head dim (heads: 2048 / hd)")
    ap.add_argument("--full", action="store_true", help="uniform shapes without causal mask")
    ap.add_argument("--heads", default=None, help="HQ/HKV: the uniform shapes with these heads (GQA), no shards")
    ap.add_argument("--shards", action="store_true", help="with --heads: the rebatching shards too, with these heads")
    ap.add_argument("--host-gaps", action="store_true",
                    help="time each call without the GPU sleep that covers the host's enqueueing of it (before NOTES v84)")
    ap.add_argument("--mix", action="append", default=[],
                    help="L1,L2,...: a varlen case of these document lengths repeated to 16K tokens (repeatable)")
    args = ap.parse_args()
    bench.COVER_HOST = not args.host_gaps
    heads = tuple(int(x) for x in args.heads.split("/")) if args.heads else None
    torch.manual_seed(0)
    ka, kbs = image(args.a), [image(b) for b in args.b]
    bw = ka.dram_bytes_per_sm
    print(f"ab.py: GPU {torch.cuda.get_device_name()} (DRAM {bw / 1e9 if bw else float('nan'):.1f} GB/s per SM); "
          f"A {args.a} (lean_dram {ka.bwd_split_policy['lean_dram']}); " +
          "; ".join(f"{chr(66 + i)} {b} (lean_dram {k.bwd_split_policy['lean_dram']})"
                    for i, (b, k) in enumerate(zip(args.b, kbs))))
    seqs = [int(x) for x in args.seqs.split(",")] if args.seqs else []
    mixes = [[int(x) for x in m.split(",")] for m in args.mix]
    todo = cases(seqs, args.hd, args.full, heads, args.shards, mixes)
    for rnd in range(args.rounds):
        for name, seg_lens, slices, h, hkv in todo:
            fl = forward_flops(slices, h, args.hd)
            xa = Ours(ka, seg_lens, slices, h, hkv, args.hd)
            xbs = [Ours(kb, seg_lens, slices, h, hkv, args.hd) for kb in kbs]
            for xb in xbs:
                xb.q.copy_(xa.q), xb.k.copy_(xa.k), xb.v.copy_(xa.v), xb.do.copy_(xa.do)
            for pas, mult in ((x, m) for x, m in (("fwd", 1.0), ("bwd", 2.5)) if x in args.passes.split(",")):
                ts = time_interleaved([getattr(x, pas) for x in [xa] + xbs], args.reps)
                fs = [tflops(fl * mult, t) for t in ts]
                others = "  ".join(f"{chr(66 + i)} {f:6.1f}  {chr(66 + i)}/A {f / fs[0]:5.3f}" for i, f in enumerate(fs[1:]))
                print(f"  round {rnd} {name:14s} {pas}: A {fs[0]:6.1f}  {others}")
            del xa, xbs
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
