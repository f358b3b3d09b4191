"""Shared-memory wavefronts of the kernels' fragment stores, counted from their address formulas (no
GPU needed): for each store pattern, the wavefronts a warp's stores take against the fewest that
their bytes need. NOTES v78 found the backward's 8-byte dQ staging stores taking twice the
wavefronts they need (a half-warp's four rows put their chunks on the same banks); this model is how
that was seen, and how a new layout can be checked before a device run.

The model (NVIDIA's documented behaviour for Volta and later): 32 banks of 4 bytes. A warp's store of
W bytes a lane is served in groups of 128 bytes of lanes (W = 4: the 32 lanes at once; W = 8: each
half-warp; W = 16: each quarter-warp); a group takes as many wavefronts as the most distinct 4-byte
words any one bank holds among its addresses. stmatrix.m8n8.x4 writes four 8x8 matrices of 16-bit
elements, each matrix 8 rows of 16 bytes at 8 lane-given addresses: a matrix is a group. Loads and
the TMA's or wgmma's own accesses are not modelled.

Usage: python3 native/bench/banks.py [--self-test]
"""
import argparse
import collections
import sys

BANKS = 32


def wavefronts(words):
    """Wavefronts of one group: words = the 4-byte word addresses it touches (repeats allowed)."""
    per_bank = collections.defaultdict(set)
    for w in words:
        per_bank[w % BANKS].add(w)
    return max((len(s) for s in per_bank.values()), default=0)


def st(width, lanes_words):
    """One warp-wide store of width bytes a lane (lanes_words[lane] = its words) as its groups."""
    group = 128 // width  # lanes a group
    return [[w for lane in lanes_words[g:g + group] for w in lane] for g in range(0, len(lanes_words), group)]


def stmatrix(matrices):
    """One stmatrix.x4: matrices[m] = the 8 rows' words of matrix m; each matrix is a group."""
    assert len(matrices) == 4 and all(len(rows) == 8 for rows in matrices)
    return [[w for row in rows for w in row] for rows in matrices]


def count_groups(groups):
    """(wavefronts, the fewest the bytes need) of one instruction given as its groups."""
    words = sum(len(g) for g in groups)
    return sum(wavefronts(g) for g in groups), max(1, -(-words // BANKS))


# ---- the kernels' layouts (element offsets), as in native/src

def dq_box_at(r, c, bm=64):
    """bwd_ws_sm90.cuh dq_box_at: fp32 boxes of bm rows x 32 columns, 128-byte swizzle."""
    return (c >> 5) * (bm * 32) + r * 32 + ((((c & 31) >> 2) ^ (r & 7)) << 2) + (c & 3)


def sw128(r, c, rows=64):
    """bwd_sm90.cuh sw128: 16-bit elements, blocks of rows x 64 columns, 128-byte swizzle."""
    return (c >> 6) * (rows * 64) + r * 64 + ((((c >> 3) & 7) ^ (r & 7)) << 3) + (c & 7)


def acc(lane):
    """A lane's place in a warp's wgmma accumulator fragments: (row group g = lane / 4, quad)."""
    return lane >> 2, lane & 3


def words_f32(offset, n):
    return [offset + i for i in range(n)]


def words_16(offset, n_elems):
    """The 4-byte words of n_elems 16-bit elements from element offset (even)."""
    return [(offset >> 1) + i for i in range((n_elems + 1) // 2)]


# ---- the store patterns of one warp and one tile: lists of instructions, each as its groups

def frag_stores(width, keys, words_of):
    """One store instruction of width bytes a lane for each key; words_of(key, g, quad) = the words
    that the lane with accumulator row group g and quad writes."""
    return [st(width, [words_of(k, *acc(lane)) for lane in range(32)]) for k in keys]


HJ = [(h, j) for h in range(2) for j in range(8)]  # a 64-column fp32 block: row half h, column group j


def dq_plain():
    """The 8-byte dQ staging stores before v78 (rows g and g + 8, column groups j)."""
    return frag_stores(8, HJ, lambda k, g, q: words_f32(dq_box_at(g + k[0] * 8, k[1] * 8 + q * 2), 2))


def dq_xor():
    """v78's register-select variant: row group g stores column group j ^ f(g), f(g) = (g ^ g / 2) % 4."""
    return frag_stores(8, HJ, lambda k, g, q: words_f32(
        dq_box_at(g + k[0] * 8, (k[1] ^ ((g ^ (g >> 1)) & 3)) * 8 + q * 2), 2))


def dq_sts128():
    """v77's unmeasured patch: lane pairs swap so that each lane stores 4 columns of one row."""
    return frag_stores(16, range(8), lambda j, g, q: words_f32(
        dq_box_at(g + (8 if q & 1 else 0), j * 8 + (q >> 1) * 4), 4))


def dq_stmatrix(nj=8):
    """v78's kept staging (stage_dq_fragments): matrix (h, e) of column group j is rows h * 8 + 0..7
    at the permuted columns e * 4 .. e * 4 + 3 of the group; each matrix one group."""
    return [stmatrix([[words_f32(dq_box_at((m >> 1) * 8 + i, j * 8 + (m & 1) * 4), 4) for i in range(8)]
                      for m in range(4)]) for j in range(nj)]


def dqt_elements_d64():
    """The d64 kernel's dQ^T element stores (rows = queries j * 8 + quad * 2 + e, column = d g + 8h)."""
    keys = [(h, j, e) for h in range(2) for j in range(8) for e in range(2)]
    return frag_stores(4, keys, lambda k, g, q: words_f32(dq_box_at(k[1] * 8 + q * 2 + k[2], g + k[0] * 8), 1))


def pairs_sw128(nj=16, rows=64):
    """16-bit pairs into a sw128 tile, 4 bytes a lane (dS^T, the forward's O, dK/dV before v78)."""
    keys = [(h, j) for h in range(2) for j in range(nj)]
    return frag_stores(4, keys, lambda k, g, q: words_16(sw128(g + k[0] * 8, k[1] * 8 + q * 2, rows), 2))


def pairs_stmatrix(nj=16, rows=64):
    """v78's stage_pairs_sw128: the same pairs as 8x8 matrices, rows h * 8 + 0..7, columns (j + m / 2) * 8."""
    return [stmatrix([[words_16(sw128((m & 1) * 8 + i, (j + (m >> 1)) * 8, rows), 8) for i in range(8)]
                      for m in range(4)]) for j in range(0, nj, 2)]


def fp32_rows(stride, nj, rotate=False):
    """fp32 fragments into rows `stride` floats apart, unswizzled; rotate: row group g stores column
    group j ^ (g % 4) (native/experiments/v78-bwd-dkdv-rows-rotated.patch; measured in v79: 0.98-1.01)."""
    keys = [(h, j) for h in range(2) for j in range(nj)]
    return frag_stores(8, keys, lambda k, g, q: words_f32(
        (g + k[0] * 8) * stride + (k[1] ^ (g & 3 if rotate else 0)) * 8 + q * 2, 2))


PATTERNS = [
    ("dQ staging, 8-byte stores (before v78)", dq_plain),
    ("dQ staging, register-select variant (v78, dropped)", dq_xor),
    ("dQ staging, 16-byte stores (v77 patch, dropped)", dq_sts128),
    ("dQ staging, stmatrix (v78, kept: d128/d256)", dq_stmatrix),
    ("dQ^T element stores (d64)", dqt_elements_d64),
    ("16-bit pairs to sw128, 4-byte stores (dS^T, forward O)", pairs_sw128),
    ("16-bit pairs to sw128, stmatrix (v78 dK/dV epilogue)", pairs_stmatrix),
    ("section 9 dK/dV rows, d128 (bwd_add_dkdv_staged)", lambda: fp32_rows(128, 16)),
    ("section 9 dK/dV rows, rotated (unmeasured patch)", lambda: fp32_rows(128, 16, rotate=True)),
    ("d256 P^T hand-off, kPStride 72", lambda: fp32_rows(72, 8)),
]


def count(pattern):
    """(instructions, wavefronts, the fewest wavefronts the bytes need) of one warp's stores of a tile."""
    instrs = pattern()
    per = [count_groups(groups) for groups in instrs]
    return len(instrs), sum(w for w, _ in per), sum(n for _, n in per)


def report(out=sys.stdout):
    print(f"{'pattern (one warp, one tile)':58s} {'instr':>5s} {'wavefronts':>10s} {'needed':>6s}", file=out)
    for name, pattern in PATTERNS:
        n, w, need = count(pattern)
        mark = "" if w == need else f"  <- {w / need:.0f}x"
        print(f"{name:58s} {n:5d} {w:10d} {need:6d}{mark}", file=out)


def _self_test():
    got = {name: count(p) for name, p in PATTERNS}
    expect = {
        "dQ staging, 8-byte stores (before v78)": (16, 64, 32),
        "dQ staging, register-select variant (v78, dropped)": (16, 32, 32),
        "dQ staging, 16-byte stores (v77 patch, dropped)": (8, 128, 32),
        "dQ staging, stmatrix (v78, kept: d128/d256)": (8, 32, 32),
        "dQ^T element stores (d64)": (32, 32, 32),
        "16-bit pairs to sw128, 4-byte stores (dS^T, forward O)": (32, 32, 32),
        "16-bit pairs to sw128, stmatrix (v78 dK/dV epilogue)": (8, 32, 32),
        "section 9 dK/dV rows, d128 (bwd_add_dkdv_staged)": (32, 256, 64),
        "section 9 dK/dV rows, rotated (unmeasured patch)": (32, 64, 64),
        "d256 P^T hand-off, kPStride 72": (16, 32, 32),
    }
    assert got == expect, got
    # the model itself: 32 lanes on 32 banks, one wavefront; all on one bank, 32
    assert count_groups(st(4, [[i] for i in range(32)])) == (1, 1)
    assert count_groups(st(4, [[i * 32] for i in range(32)])) == (32, 1)
    assert count_groups(st(4, [[5] for _ in range(32)]))[0] == 1  # the same word: one
    # 8-byte stores are served a half-warp at a time: two half-warps on the same banks cost nothing more
    assert count_groups(st(8, [[2 * (i % 16), 2 * (i % 16) + 1] for i in range(32)])) == (2, 2)
    # stmatrix's permutation inverts as bwd_post_ws reads it (bwd.cuh dq_ws_column)
    perm = [(c & ~7) | ((c & 1) << 2) | ((c >> 1) & 3) for c in range(8)]
    assert perm == [0, 4, 1, 5, 2, 6, 3, 7], perm
    print("banks self-test passed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        _self_test()
    else:
        report()


if __name__ == "__main__":
    main()
