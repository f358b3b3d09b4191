"""Whether two kernel images compute bit-identical forward outputs (O and LSE) on ab.py's cases
(the rebatching shards, the long sequence, uniform causal shapes) at head_dim 64 and 128 (--hds), from the
same random inputs, with O poisoned (NaN) before each launch. For changes that should move only
time (where stores go, which thread issues them), not a single bit. Exit status 1 on a difference.

Usage: python3 native/bench/same.py A.fatbin B.fatbin [--seqs 512,2048,16384] [--hds 64,128,256]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab import cases, image  # noqa: E402
from bench import Ours  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--seqs", default="512,2048,16384")
    ap.add_argument("--hds", default="64,128", help="head dims (256 where the images have it)")
    args = ap.parse_args()
    torch.manual_seed(1)
    ka, kb = image(args.a), image(args.b)
    differ = 0
    for hd in [int(x) for x in args.hds.split(",")]:
        for name, seg_lens, slices, h, hkv in cases([int(x) for x in args.seqs.split(",")], hd):
            xa = Ours(ka, seg_lens, slices, h, hkv, hd)
            xb = Ours(kb, seg_lens, slices, h, hkv, hd)
            xb.q.copy_(xa.q), xb.k.copy_(xa.k), xb.v.copy_(xa.v)
            for x in (xa, xb):
                x.o.fill_(float("nan"))
                x.lse.fill_(float("nan"))
                x.fwd()
            torch.cuda.synchronize()
            same_o = torch.equal(xa.o.view(torch.int16), xb.o.view(torch.int16))
            same_lse = torch.equal(xa.lse.view(torch.int32), xb.lse.view(torch.int32))
            differ += not (same_o and same_lse)
            print(f"d{hd} {name}: O {'identical' if same_o else 'DIFFERS'}, LSE {'identical' if same_lse else 'DIFFERS'}")
    print(f"same.py: {'all identical' if differ == 0 else f'{differ} cases differ'}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
