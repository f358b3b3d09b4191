"""Correctness of the fused varlen attention kernels on a GPU.

For every case: fresh random inputs, NaN-poisoned outputs and workspaces, our forward (O, LSE) and
backward (dQ, dK, dV) through the same ABI the JCuda backend uses, against
  - an fp64 reference (PyTorch math on upcast inputs, autograd for the gradients), and
  - PyTorch's own low-precision attention on the same inputs: FlashAttention-2 through
    torch.nn.attention.varlen.varlen_attn for every slice FA2 can express (full, or bottom-right
    causal with kv_len >= q_len), PyTorch math in the input dtype for the rest.
Pass (FlashAttention's rule): our max error against the reference <= 2 x PyTorch's max error
against the same reference + eps. Also: every output element written (no NaN left), rows that
see no key give O = 0 and LSE = -inf exactly, dK/dV rows that no slice reads are exactly 0, and
the forward result does not depend on the work-list order.

Usage: python3 native/bench/check.py [--fatbin PATH] [--seed N] [--quick]
Exit status 0 iff every case passes.
"""
import argparse
import inspect
import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distca_host import HEAD_DIMS, Slice, add_kernel_arguments, kernels_from_args  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

try:
    from torch.nn.attention.varlen import AuxRequest, varlen_attn
    _VARLEN_PARAMS = inspect.signature(varlen_attn).parameters
except ImportError:  # pragma: no cover - older PyTorch
    varlen_attn = None


def fa2_slice(q, k, v, causal, scale):
    """FlashAttention-2 (PyTorch varlen_attn) on one sequence; returns O [q, H, D], LSE [H, q]."""
    dev = q.device
    cu_q = torch.tensor([0, q.shape[0]], dtype=torch.int32, device=dev)
    cu_k = torch.tensor([0, k.shape[0]], dtype=torch.int32, device=dev)
    kw = {}
    if "window_size" in _VARLEN_PARAMS:
        kw["window_size"] = (-1, 0) if causal else (-1, -1)
    else:
        kw["is_causal"] = causal
    if "scale" in _VARLEN_PARAMS:
        kw["scale"] = scale
    out, lse = varlen_attn(q, k, v, cu_q, cu_k, q.shape[0], k.shape[0], return_aux=AuxRequest(lse=True), **kw)
    if lse.dim() == 2 and lse.shape[0] == q.shape[0] and lse.shape[1] == q.shape[1]:
        lse = lse.t()
    return out, lse.reshape(q.shape[1], q.shape[0]).float()


def math_slice(q, k, v, causal, diag, scale):
    """Attention by definition in q's dtype (fp64 for the reference). Rows seeing no key: O = 0, LSE = -inf."""
    group = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(group, dim=1)
    vv = v.repeat_interleave(group, dim=1)
    s = torch.einsum("qhd,khd->hqk", q, kk) * scale
    if causal:
        i = torch.arange(q.shape[0], device=q.device)[:, None]
        j = torch.arange(k.shape[0], device=q.device)[None, :]
        s = s.masked_fill(j > i + diag, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m)
    l = p.sum(dim=-1, keepdim=True)
    seen = l > 0
    o = torch.einsum("hqk,khd->qhd", p, vv) / torch.where(seen, l, torch.ones_like(l)).permute(1, 0, 2)
    lse = torch.where(seen, m + torch.log(torch.where(seen, l, torch.ones_like(l))), torch.full_like(l, float("-inf")))
    return o, lse.squeeze(-1)


def fa2_can_express(s):
    if s.q_len == 0 or s.kv_len == 0:
        return False
    return not s.causal or (s.diag() == s.kv_len - s.q_len and s.kv_len >= s.q_len)


def run_attention(seg_lens, slices, lay, Q, K, V, dO, scale, impl):
    """Forward + backward of the whole batch with one implementation; fused-layout leaves."""
    Q = Q.detach().requires_grad_(True)
    K = K.detach().requires_grad_(True)
    V = V.detach().requires_grad_(True)
    hq = Q.shape[1]
    O = torch.zeros_like(Q)
    LSE = torch.full((hq, max(1, lay.total_q)), float("-inf"), dtype=torch.float64 if Q.dtype == torch.float64 else torch.float32, device=Q.device)
    outs = []
    for i, s in enumerate(slices):
        qs = Q[lay.q_start[i]: lay.q_start[i] + s.q_len]
        k0 = lay.k_start[s.segment] + s.kv_start
        ks, vs = K[k0: k0 + s.kv_len], V[k0: k0 + s.kv_len]
        if s.q_len == 0 or s.kv_len == 0:
            continue  # O stays 0, LSE -inf, no gradient
        if impl == "fa2" and fa2_can_express(s):
            group = hq // K.shape[1]
            o, lse = fa2_slice(qs, ks.repeat_interleave(group, dim=1), vs.repeat_interleave(group, dim=1), s.causal, scale)
        else:
            o, lse = math_slice(qs, ks, vs, s.causal, s.diag(), scale)
        outs.append((i, o))
        LSE[:, lay.q_start[i]: lay.q_start[i] + s.q_len] = lse.detach().to(LSE.dtype)
    loss = sum((o * dO[lay.q_start[i]: lay.q_start[i] + o.shape[0]].to(o.dtype)).sum() for i, o in outs)
    if outs:
        dq, dk, dv = torch.autograd.grad(loss, (Q, K, V), allow_unused=True)
    else:
        dq = dk = dv = None
    dq = torch.zeros_like(Q) if dq is None else dq
    dk = torch.zeros_like(K) if dk is None else dk
    dv = torch.zeros_like(V) if dv is None else dv
    for i, o in outs:
        O[lay.q_start[i]: lay.q_start[i] + o.shape[0]] = o.detach()
    return O.detach(), LSE, dq.detach(), dk.detach(), dv.detach()


def max_err(a, b):
    if a.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def lse_err(ours, ref):
    """Max error over finite reference entries; -inf positions must match exactly."""
    ref_inf = torch.isinf(ref)
    if not torch.equal(torch.isinf(ours) & (ours < 0), ref_inf):
        return float("inf")
    finite = ~ref_inf
    if finite.sum() == 0:
        return 0.0
    return (ours[finite].double() - ref[finite].double()).abs().max().item()


def check_case(kern, name, seg_lens, slices, hq, hkv, hd, dtype, gen):
    dev = "cuda"
    scale = 1.0 / math.sqrt(hd)
    lay = kern.layout(seg_lens, slices, hd)
    tq, tk = lay.total_q, lay.total_k
    Q = torch.randn((tq, hq, hd), generator=gen, device=dev).to(dtype)
    K = torch.randn((tk, hkv, hd), generator=gen, device=dev).to(dtype)
    V = torch.randn((tk, hkv, hd), generator=gen, device=dev).to(dtype)
    dO = torch.randn((tq, hq, hd), generator=gen, device=dev).to(dtype)
    nan = float("nan")

    # ours, with every output and workspace poisoned
    O = torch.full((tq, hq, hd), nan, dtype=dtype, device=dev)
    LSE = torch.full((hq, max(1, tq)), nan, dtype=torch.float32, device=dev)
    kern.forward(lay, Q, K, V, O, LSE, scale)
    dQ = torch.full_like(Q, nan)
    dK = torch.full_like(K, nan)
    dV = torch.full_like(V, nan)
    dsum = torch.full((hq, max(1, tq)), nan, dtype=torch.float32, device=dev)
    dq_accum = torch.full((max(1, tq), hq, hd), nan, dtype=torch.float32, device=dev)
    # distca_attn.h section 8: bwd_pre must reset every claim word (all bits set here: "zeroed" and
    # a huge visit count), and rows no key tile visits must come out 0, not the NaN workspace
    claims = torch.full((hq, max(1, tq)), -1, dtype=torch.int32, device=dev)
    kern.backward(lay, Q, K, V, O, dO, LSE, dQ, dK, dV, scale, dsum, dq_accum, claims=claims)
    torch.cuda.synchronize()
    LSE = LSE[:, :tq]

    problems = []
    for label, t in (("O", O), ("LSE", LSE), ("dQ", dQ), ("dK", dK), ("dV", dV)):
        if torch.isnan(t).any():
            problems.append(f"{label}: {int(torch.isnan(t).sum())} elements unwritten/NaN")

    # work-list order must not change the forward result
    lay_rev = kern.layout(seg_lens, slices, hd, order="reversed")
    O2 = torch.full_like(O, nan)
    LSE2 = torch.full((hq, max(1, tq)), nan, dtype=torch.float32, device=dev)
    kern.forward(lay_rev, Q, K, V, O2, LSE2, scale)
    torch.cuda.synchronize()
    if not (torch.equal(O2, O) and torch.equal(LSE2[:, :tq], LSE)):
        problems.append("forward depends on work-list order")

    ref = run_attention(seg_lens, slices, lay, Q.double(), K.double(), V.double(), dO, scale, "math")
    base = run_attention(seg_lens, slices, lay, Q, K, V, dO, scale, "fa2" if varlen_attn else "math")

    # rows that see no key: O = 0 exactly, LSE = -inf; dK/dV rows nobody reads: 0 exactly
    for i, s in enumerate(slices):
        for r in range(s.q_len):
            if s.kv_len == 0 or (s.causal and r + s.diag() < 0):
                row = lay.q_start[i] + r
                if O[row].abs().max().item() != 0 or not torch.all(LSE[:, row] == float("-inf")):
                    problems.append(f"slice {i} row {r} sees no key but O/LSE not 0/-inf")
                    break
                if dQ[row].abs().max().item() != 0:
                    problems.append(f"slice {i} row {r} sees no key but dQ is not 0")
                    break
    read = torch.zeros(tk, dtype=torch.bool, device=dev)
    for s in slices:
        if s.q_len > 0:
            k0 = lay.k_start[s.segment] + s.kv_start
            read[k0: k0 + s.kv_len] = True
    unread = ~read
    if unread.any() and (dK[unread].abs().max().item() != 0 or dV[unread].abs().max().item() != 0):
        problems.append("dK/dV of rows no slice reads are not 0")

    names = ("O", "LSE", "dQ", "dK", "dV")
    ours_t = (O, LSE, dQ, dK, dV)
    rows = []
    for label, ours, r, b in zip(names, ours_t, ref, base):
        if label == "LSE":
            e_ours, e_base = lse_err(ours, r[:, :tq]), lse_err(b[:, :tq], r[:, :tq])
        else:
            e_ours, e_base = max_err(ours, r), max_err(b, r)
        ref_max = r[torch.isfinite(r)].abs().max().item() if torch.isfinite(r).any() else 0.0
        eps = 1e-5 + 2e-4 * ref_max
        ok = e_ours <= 2 * e_base + eps
        rows.append(f"{label} {e_ours:.2e}/{e_base:.2e}{'' if ok else ' FAIL'}")
        if not ok:
            problems.append(f"{label}: error {e_ours:.3e} > 2 x {e_base:.3e} + {eps:.1e}")
    status = "PASS" if not problems else "FAIL"
    print(f"{status} {name:<28} {str(dtype).split('.')[-1]:<8} d{hd:<3} hq{hq}/hkv{hkv}  (ours/torch max err) " + "  ".join(rows))
    for p in problems:
        print(f"     - {p}")
    return not problems


def cases(rng):
    yield "mha_causal", [300, 1000], [Slice(0, 0, 300, 300, True), Slice(1, 0, 1000, 1000, True)], 4, 4
    yield "mha_full", [300, 1000], [Slice(0, 0, 300, 300, False), Slice(1, 0, 1000, 1000, False)], 4, 4
    yield "gqa_full", [517, 129], [Slice(0, 0, 517, 517, False), Slice(1, 0, 129, 129, False)], 8, 2
    yield "gqa_causal", [777], [Slice(0, 0, 777, 777, True)], 8, 2
    # a group of 8 heads (the chunked backward of distca_attn.h section 10 where not split: --bwd-splits 1)
    # over more query tiles than a chunk, its key tiles' walks rotated
    yield "gqa_full_long", [1500], [Slice(0, 0, 1500, 1500, False)], 16, 2
    # every slice long enough for head_dim 64's 128-row steps (distca_attn.h section 13: 1,536 query rows
    # non-causal, 3,072 causal), which the hosts then launch (--bwd-q128 always: every case on them)
    yield "long_q128", [2100, 4200], [Slice(0, 0, 2100, 2100, False), Slice(1, 0, 4200, 4200, True)], 4, 4
    yield "mqa_bottom_right", [700, 300], [Slice(0, 0, 700, 200, True), Slice(1, 0, 300, 45, True)], 4, 1
    yield "diagonal", [400, 300], [Slice(0, 0, 400, 130, True, diagonal=-5),
                                   Slice(1, 0, 300, 333, True, diagonal=10),
                                   Slice(0, 50, 200, 64, True, diagonal=-70),
                                   Slice(1, 17, 250, 190, True, diagonal=1000)], 4, 2
    yield "q_longer_than_kv", [90], [Slice(0, 0, 90, 300, True)], 2, 2
    yield "single_tokens", [1, 257, 1], [Slice(0, 0, 1, 1, True), Slice(1, 0, 257, 1, True),
                                         Slice(1, 0, 257, 1, False), Slice(2, 0, 1, 1, False)], 2, 1
    yield "empty_docs", [0, 5, 0, 70], [Slice(0, 0, 0, 3, True), Slice(1, 0, 5, 0, True),
                                        Slice(2, 0, 0, 0, False), Slice(1, 0, 5, 5, True),
                                        Slice(3, 0, 70, 70, False)], 4, 2
    yield "shared_kv", [900, 260], [Slice(0, 0, 300, 300, True), Slice(0, 0, 600, 300, True),
                                    Slice(0, 0, 900, 300, True),
                                    Slice(0, 256, 400, 100, True, diagonal=350),
                                    Slice(0, 100, 50, 20, False), Slice(1, 0, 130, 130, True)], 4, 2
    yield "tile_edges", [63, 64, 65, 127, 128, 129, 191, 192, 193], \
        [Slice(i, 0, n, n, True) for i, n in enumerate([63, 64, 65, 127, 128, 129, 191, 192, 193])], 2, 2
    # one K/V head for 8 (and for 6) query heads over long causal documents: the backward's key tiles
    # are few and skewed, so its work list has group splits (distca_attn.h section 9) unless --bwd-splits 1
    yield "gqa_long_splits", [3000, 1100], [Slice(0, 0, 3000, 3000, True), Slice(1, 0, 1100, 1100, True)], 8, 1
    yield "gqa_group6_splits", [2500], [Slice(0, 0, 2500, 2500, True)], 12, 2
    # a group of 20 over documents of 128 to 5,000 tokens: split into eight pieces of two or three heads
    # each (NOTES v71) unless --bwd-splits 1 (then the chunked walk)
    yield "gqa_group20_splits", [5000, 700, 128], [Slice(i, 0, n, n, True) for i, n in enumerate([5000, 700, 128])], 20, 1
    # a group of 48 (at head_dim 256 sixteen pieces of three heads in head order: NOTES v80) and a group
    # of 16 over short documents (walks of 12 to 31 steps: up to four pieces a key tile, v80)
    yield "gqa_group48_splits", [1500, 900], [Slice(0, 0, 1500, 1500, True), Slice(1, 0, 900, 900, True)], 48, 1
    yield "gqa_group16_short", [1024, 1024, 1600], [Slice(i, 0, n, n, True) for i, n in enumerate([1024, 1024, 1600])], 16, 1
    lens = [rng.randint(1, 1500) for _ in range(12)]
    yield "varlen_mix", lens, [Slice(i, 0, n, n, i % 4 != 3) for i, n in enumerate(lens)], 4, 2


def main():
    ap = argparse.ArgumentParser()
    add_kernel_arguments(ap)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="bf16 only")
    ap.add_argument("--hds", default=None, help="comma-separated head dims to check (default: all the image has)")
    args = ap.parse_args()
    only = None if args.hds is None else {int(h) for h in args.hds.split(",")}
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"check.py seed {seed}, GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"FA2 baseline {'varlen_attn' if varlen_attn else 'unavailable (math only)'}")
    kern = kernels_from_args(args)
    for hd in HEAD_DIMS:
        if hd not in kern.info:
            print(f"d{hd}: no kernels in this image for this GPU (skipped)")
            continue
        i = kern.info[hd]
        print(f"d{hd}: fwd {i.fwd_block_m}x{i.fwd_block_n} {i.fwd_threads} thr {i.fwd_smem} B smem "
              f"{kern.ctas_per_sm('fwd', torch.bfloat16, hd)} CTA/SM; "
              f"bwd {i.bwd_block_m}x{i.bwd_block_n} {i.bwd_threads} thr {i.bwd_smem} B smem "
              f"{kern.ctas_per_sm('bwd', torch.bfloat16, hd)} CTA/SM"
              + (f"; warp-specialized forward ({i.fwd_ws_threads} thr, {i.fwd_ws_smem} B smem)"
                 if kern.ws and i.fwd_ws_threads else "")
              + (f" and backward ({i.bwd_ws_threads} thr, {i.bwd_ws_smem} B smem)"
                 if kern.ws and i.bwd_ws_threads else ""))
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    rng = random.Random(seed)
    dtypes = (torch.bfloat16,) if args.quick else (torch.bfloat16, torch.float16)
    total = failed = 0
    for dtype in dtypes:
        for hd in kern.info:
            if only is not None and hd not in only:
                continue
            for name, seg_lens, slices, hq, hkv in cases(rng):
                total += 1
                try:
                    ok = check_case(kern, name, seg_lens, slices, hq, hkv, hd, dtype, gen)
                except Exception as e:  # report and continue with the other cases
                    print(f"FAIL {name} {dtype} d{hd}: {type(e).__name__}: {e}")
                    ok = False
                failed += 0 if ok else 1
    print(f"check.py: {total - failed}/{total} cases passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
