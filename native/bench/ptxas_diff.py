"""Per-kernel resources from native/build.sh's ptxas logs (OUTPUT.fatbin.ptxas.log): registers, spill
stores and loads, stack frame and named barriers of every entry function and architecture, for one
image or, with two logs, only the kernels whose figures differ (a change meant for one kernel that
moved the registers or spills of another shows here, before any device time is spent: NOTES v97's
early LSE loads spilled 84-120 bytes in kernels the change was not meant for).

Usage: python3 native/bench/ptxas_diff.py A.ptxas.log [B.ptxas.log] [--kernel bwd_ws] [--arch sm_90a] [--all]
"""
import argparse
import re
import sys

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?")
FIELDS = ("registers", "spill_stores", "spill_loads", "stack", "barriers")


def parse(text):
    """{(kernel, arch): {field: int}} from ptxas -v output (each entry's figures follow its
    'Compiling entry function' line; a field ptxas did not print stays 0)."""
    kernels = {}
    current = None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = dict.fromkeys(FIELDS, 0)
            kernels[(m.group(1), m.group(2))] = current
            continue
        if current is None:
            continue
        m = _FRAME.search(line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = (int(g) for g in m.groups())
            continue
        m = _USED.search(line)
        if m:
            current["registers"] = int(m.group(1))
            current["barriers"] = int(m.group(2) or 0)
    return kernels


def _row(values):
    return "regs {registers:3d}  spills {spill_stores:4d}/{spill_loads:<4d} stack {stack:4d}  barriers {barriers:2d}".format(**values)


def report(a, b=None, kernel="", arch="", show_all=False):
    """The lines to print: every selected kernel of a (one log), or those whose figures differ
    between a and b (all of them with show_all), with B - A for each field that moved."""
    keys = sorted(set(a) | set(b or {}))
    keys = [k for k in keys if kernel in k[0] and arch in k[1]]
    lines = []
    for k in keys:
        name = f"{k[0]} [{k[1]}]"
        if b is None:
            lines.append(f"{name:52s} {_row(a[k])}")
            continue
        va, vb = a.get(k), b.get(k)
        if va is None or vb is None:
            lines.append(f"{name:52s} only in {'B' if va is None else 'A'}")
            continue
        moved = {f: vb[f] - va[f] for f in FIELDS if vb[f] != va[f]}
        if moved or show_all:
            delta = ", ".join(f"{f} {va[f]} -> {vb[f]} ({d:+d})" for f, d in moved.items()) or "same"
            lines.append(f"{name:52s} {delta}")
    if b is not None and not lines:
        lines.append("no kernel's registers, spills, stack or barriers differ")
    return lines


_SAMPLE_A = """ptxas info    : 192 bytes gmem
ptxas info    : Compiling entry function 'distca_attn_bwd_ws_bf16_d128' for 'sm_90a'
ptxas info    : Function properties for distca_attn_bwd_ws_bf16_d128
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 168 registers, used 2 barriers, 8 bytes cumulative stack size
ptxas info    : Compiling entry function 'distca_attn_bwd_ws_kv_bf16_d128' for 'sm_90a'
ptxas info    : Function properties for distca_attn_bwd_ws_kv_bf16_d128
    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 168 registers, used 2 barriers, 16 bytes cumulative stack size
ptxas info    : Compiling entry function 'distca_attn_fwd_bf16_d128' for 'sm_80'
ptxas info    : Function properties for distca_attn_fwd_bf16_d128
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 255 registers, 0 bytes cumulative stack size
"""
_SAMPLE_B = _SAMPLE_A.replace("used 2 barriers, 8 bytes", "used 16 barriers, 8 bytes").replace(
    "16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads",
    "96 bytes stack frame, 84 bytes spill stores, 132 bytes spill loads")


def self_test():
    a, b = parse(_SAMPLE_A), parse(_SAMPLE_B)
    assert len(a) == 3, a
    fwd = a[("distca_attn_fwd_bf16_d128", "sm_80")]
    assert fwd == {"registers": 255, "spill_stores": 0, "spill_loads": 0, "stack": 0, "barriers": 0}, fwd
    assert a[("distca_attn_bwd_ws_bf16_d128", "sm_90a")]["spill_stores"] == 4
    lines = report(a, b)
    assert len(lines) == 2, lines
    assert "barriers 2 -> 16 (+14)" in lines[0] and "bwd_ws_bf16_d128" in lines[0], lines
    assert "spill_stores 8 -> 84 (+76)" in lines[1] and "spill_loads 8 -> 132 (+124)" in lines[1], lines
    assert report(a, a) == ["no kernel's registers, spills, stack or barriers differ"]
    assert len(report(a, b, kernel="kv")) == 1 and len(report(a, b, arch="sm_80")) == 1
    assert "same" in report(a, b, arch="sm_80", show_all=True)[0]
    assert len(report(a, kernel="bwd")) == 2
    print("ptxas_diff.py: self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", nargs="?")
    ap.add_argument("b", nargs="?")
    ap.add_argument("--kernel", default="", help="only kernels whose name contains this")
    ap.add_argument("--arch", default="", help="only this architecture (sm_90a, sm_80)")
    ap.add_argument("--all", action="store_true", help="with two logs: every selected kernel, also unchanged ones")
    ap.add_argument("--self-test", action="store_true", help="check the parser and the comparison on a sample")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    if not args.a:
        ap.error("a ptxas log is needed")
    with open(args.a) as f:
        a = parse(f.read())
    b = None
    if args.b:
        with open(args.b) as f:
            b = parse(f.read())
    for line in report(a, b, args.kernel, args.arch, args.all):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
