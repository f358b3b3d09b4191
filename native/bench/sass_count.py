"""SASS instruction counts of kernels in one or two kernel images, by opcode (cuobjdump -sass; the GPU
host has it in /usr/local/cuda/bin, this repository's build machine does not). For timing-only
images (a store compiled out, a wait dropped) check first that the change removed what it meant to
and nothing more: ptxas deletes a wgmma whose accumulators nothing reads (NOTES v77: a build without
the dQ stores had lost phase C's GEMM, 75 HGMMA against 92, and read 1.23x where the stores cost ~5%).

Usage: python3 native/bench/sass_count.py A.fatbin [B.fatbin] [--kernel distca_attn_bwd_ws_bf16_d128]
           [--ops HGMMA,STS,LDS,SHFL,BAR,SYNCS] [--all]
Prints, per kernel and architecture (all kernels whose name contains --kernel), the total instruction count and the
count of each opcode in --ops (an opcode is the mnemonic before its first '.'), and with two images
each count's difference; --all lists every opcode whose count differs (or every opcode, one image).
"""
import argparse
import collections
import re
import subprocess
import sys

_ARCH = re.compile(r"^\s*arch\s*=\s*(\S+)")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
# "/*0230*/  @!P0 HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;  /* 0x... */"
_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")


def parse(sass_text):
    """{"kernel [arch]": Counter of opcodes} from cuobjdump -sass output (a fatbin holds each kernel
    once per architecture: sm_80's copies of the sm_90a-only kernels are traps)."""
    kernels = {}
    current = None
    arch = "?"
    for line in sass_text.splitlines():
        m = _ARCH.match(line)
        if m:
            arch = m.group(1)
            continue
        m = _FUNCTION.match(line)
        if m:
            current = kernels.setdefault(f"{m.group(1)} [{arch}]", collections.Counter())
            continue
        if current is None:
            continue
        m = _INSTRUCTION.match(line)
        if m:
            current[m.group(1)] += 1
    return kernels


def dump(fatbin):
    out = subprocess.run(["cuobjdump", "-sass", fatbin], check=True, capture_output=True, text=True)
    return parse(out.stdout)


def report(images, kernel_filter, ops, show_all, out=sys.stdout):
    counts = [dump(f) if isinstance(f, str) else f for f in images]
    names = sorted(n for n in counts[0] if kernel_filter in n)
    if not names:
        print(f"no kernel whose name contains '{kernel_filter}'", file=out)
        return 1
    for name in names:
        cs = [c.get(name, collections.Counter()) for c in counts]
        cols = [sum(c.values()) for c in cs]
        line = f"{name}: instructions " + " -> ".join(str(x) for x in cols)
        if len(cs) == 2:
            line += f" ({cols[1] - cols[0]:+d})"
        print(line, file=out)
        shown = list(ops)
        if show_all:
            every = sorted(set().union(*cs))
            shown = every if len(cs) == 1 else [op for op in every if cs[0][op] != cs[1][op]]
        for op in shown:
            vals = [c[op] for c in cs]
            mark = "  <- differs" if len(vals) == 2 and vals[0] != vals[1] else ""
            print(f"  {op:10s} " + " -> ".join(f"{v:5d}" for v in vals) + mark, file=out)
    return 0


def _self_test():
    sample = """
        Fatbin elf code:
        ================
        arch = sm_90a
        Function : k_one
        .headerflags    @"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                     /* 0x00000a00ff017b82 */
        /*0010*/              @!P0 HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ; /* 0x0 */
        /*0020*/              @UP1 STS.64 [R2], R4 ;                          /* 0x0 */
        /*0030*/                   STS.128 [R2+0x10], R8 ;                    /* 0x0 */
        /*0040*/                   EXIT ;                                     /* 0x0 */
        Function : k_two
        /*0000*/                   SHFL.BFLY PT, R3, R2, 0x1, 0x1f ;          /* 0x0 */
        Fatbin elf code:
        ================
        arch = sm_80
        Function : k_two
        /*0000*/                   BPT.TRAP 0x1 ;                             /* 0x0 */
    """
    k = parse(sample)
    assert k["k_one [sm_90a]"] == collections.Counter({"LDC": 1, "HGMMA": 1, "STS": 2, "EXIT": 1}), k
    assert k["k_two [sm_90a]"] == collections.Counter({"SHFL": 1}), k
    assert k["k_two [sm_80]"] == collections.Counter({"BPT": 1}), k
    print("sass_count self-test passed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="*")
    ap.add_argument("--kernel", default="", help="kernels whose name contains this (default: every kernel)")
    ap.add_argument("--ops", default="HGMMA,STS,LDS,SHFL,BAR,SYNCS")
    ap.add_argument("--all", action="store_true", help="every opcode whose count differs (one image: every opcode)")
    ap.add_argument("--self-test", action="store_true", help="check the parser on a sample, no cuobjdump needed")
    args = ap.parse_args()
    if args.self_test:
        _self_test()
        return 0
    if not 1 <= len(args.images) <= 2:
        ap.error("one or two kernel images")
    return report(args.images, args.kernel, [op for op in args.ops.split(",") if op], args.all)


if __name__ == "__main__":
    sys.exit(main())
