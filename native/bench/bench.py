"""Kernel benchmarks: TFLOP/s of our fused varlen kernels against PyTorch's FlashAttention-2
(torch.nn.attention.varlen.varlen_attn) and cuDNN (SDPA, CUDNN_ATTENTION backend), same shapes,
same GPU, same job.

FLOPs (DESIGN section 3): forward 4 * b * s^2 * h * d, halved when causal (exactly: 4 * d * h *
visible pairs); backward 2.5x forward. Times: median over CUDA-event-timed repetitions after
warm-up, the implementations a ratio compares run interleaved (a, b, c, a, b, c, ...), because the
GPU's clock drifts by 5-10% within seconds at its power cap (NOTES.md v10b), and each timed call is
enqueued while the GPU still runs a sleep kernel, so that its start event is reached only once the
host has enqueued all of its launches (the host's share is not GPU time: NOTES.md v84; the Java
host encodes its parameters before the start event for the same reason). Backward of ours =
bwd_pre + bwd + bwd_post; backward of PyTorch = autograd.grad of the output (its preprocess and dQ
conversion kernels included likewise).

Sections:
  uniform   b*s = 16K tokens, h*d = 2048, s = 512 .. 16K, d in {64, 128}, causal and not (--seqs beyond
            16K: one sequence of s tokens)
  varlen    documents drawn from the pretrain length distribution (bench/pretrain_doc_lengths_sample.json),
            whole documents, causal, 64K tokens
  gqa       grouped-query shapes of Llama-3-8B (32/8), Qwen2.5-7B (28/4) and a TP4 (16/2) and a TP8 rank (8/1)
            of Llama-3-70B, d128, b*s = 16K tokens: ours against ours as MHA (same FLOPs), FA2 and cuDNN
            (not in the default sections)
  rebatch   query shards of 128..4K tokens of such documents (KV = the document prefix, one shared
            K/V copy per document, bottom-right causal): one fused launch vs one long sequence of the
            same FLOPs vs one launch per shard; once with cuts on the planner's 128-token grid, once
            with cuts anywhere (--cut-grids)

Usage: python3 native/bench/bench.py [--fatbin PATH] [--sections uniform,varlen,rebatch,gqa] [--quick]
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distca_host import Slice, add_kernel_arguments, forward_flops, kernels_from_args  # noqa: E402
from check import AuxRequest, _VARLEN_PARAMS, varlen_attn  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))


# Whether each timed call is enqueued under a GPU sleep that outlasts the host's enqueueing of it
# (bench.py and ab.py --host-gaps: off, the timing before NOTES v84). Without it, a call whose
# launches take the host longer than the previous call takes the GPU (ours: 50-180 us of Python
# parameter and tensor-map work a call; PyTorch's dispatch as much) timed the host: at 512 tokens
# up to half of the event time (v84: d128 causal 512 forward 167 TFLOP/s timed so, 328 covered).
COVER_HOST = True


def host_cover_cycles(fns):
    """torch.cuda._sleep cycles that cover the host's enqueueing of the slowest of `fns` twice over
    (measured while the GPU is busy, so that launches only enqueue; at 2 GHz, at least 1 ms, at most
    50 ms: a call that waits for the GPU on the host cannot be covered)."""
    torch.cuda.synchronize()
    torch.cuda._sleep(int(2e8))
    worst = 0.0
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        worst = max(worst, time.perf_counter() - t0)
    torch.cuda.synchronize()
    return int(min(1e8, max(2e6, 2 * worst * 2e9)))


def _timed(fn, events, cover):
    if cover:
        torch.cuda._sleep(cover)
    a = torch.cuda.Event(enable_timing=True)
    b = torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    events.append((a, b))


def time_ms(fn, reps, warmup=2):
    """Median milliseconds of `fn` (time_interleaved of it alone)."""
    return time_interleaved([fn], reps, warmup)[0]


def time_interleaved(fns, reps, warmup=2):
    """Median milliseconds of each of `fns`, run in turn (a, b, c, a, b, c, ...) so that all of them
    see the same clocks: the GPU's clock drifts by 5-10% within seconds of sustained load, which
    separate timings would fold into their ratios. Each call under a sleep (COVER_HOST)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    cover = host_cover_cycles(fns) if COVER_HOST else 0
    torch.cuda.synchronize()
    events = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            _timed(fn, events[i], cover)
    torch.cuda.synchronize()
    out = []
    for ev in events:
        t = sorted(a.elapsed_time(b) for a, b in ev)
        out.append(t[len(t) // 2])
    return out


class Ours:
    def __init__(self, kern, seg_lens, slices, hq, hkv, hd, dtype=torch.bfloat16):
        self.kern, self.hd = kern, hd
        self.lay = kern.layout(seg_lens, slices, hd)
        tq, tk = self.lay.total_q, self.lay.total_k
        self.scale = 1.0 / math.sqrt(hd)
        self.q = torch.randn((tq, hq, hd), device="cuda", dtype=dtype)
        self.k = torch.randn((tk, hkv, hd), device="cuda", dtype=dtype)
        self.v = torch.randn((tk, hkv, hd), device="cuda", dtype=dtype)
        self.do = torch.randn((tq, hq, hd), device="cuda", dtype=dtype)
        self.o = torch.empty_like(self.q)
        self.lse = torch.empty((hq, max(1, tq)), device="cuda", dtype=torch.float32)
        self.dq, self.dk, self.dv = torch.empty_like(self.q), torch.empty_like(self.k), torch.empty_like(self.v)
        self.dsum = torch.empty((hq, max(1, tq)), device="cuda", dtype=torch.float32)
        self.acc = torch.empty((max(1, tq), hq, hd), device="cuda", dtype=torch.float32)
        self.claims = torch.empty((hq, max(1, tq)), device="cuda", dtype=torch.int32)
        self.fwd()
        # D = rowsum(dO * O) as a trainer client sends it to the Java server (bwd_server)
        self.delta = torch.zeros((hq, max(1, tq)), device="cuda", dtype=torch.float32)
        self.delta[:, :tq] = (self.do.float() * self.o.float()).sum(-1).t()

    def fwd(self):
        self.kern.forward(self.lay, self.q, self.k, self.v, self.o, self.lse, self.scale)

    def bwd(self, only=None):
        self.kern.backward(self.lay, self.q, self.k, self.v, self.o, self.do, self.lse, self.dq, self.dk, self.dv,
                           self.scale, self.dsum, self.acc, only=only, claims=self.claims)

    def bwd_server(self):
        """The backward as the Java server runs it: D from the host, no bwd_pre."""
        self.kern.backward(self.lay, self.q, self.k, self.v, self.o, self.do, self.lse, self.dq, self.dk, self.dv,
                           self.scale, self.delta, self.acc, claims=self.claims, host_delta=True)


def fa2_call(q, k, v, cu, max_len, causal, cu_k=None, max_k=None, gqa=False):
    kw = {"enable_gqa": True} if gqa else {}
    if "window_size" in _VARLEN_PARAMS:
        kw["window_size"] = (-1, 0) if causal else (-1, -1)  # causal: bottom-right aligned
    else:
        kw["is_causal"] = causal
    cu_k = cu if cu_k is None else cu_k
    return varlen_attn(q, k, v, cu, cu_k, max_len, max_len if max_k is None else max_k, **kw)


def _cu(lens):
    cu = [0]
    for x in lens:
        cu.append(cu[-1] + x)
    return torch.tensor(cu, dtype=torch.int32, device="cuda")


class TorchFA2:
    """PyTorch's FlashAttention-2 on sequences of `lens` query rows; kv_lens (default: lens) keys
    each, every sequence its own K/V copy (causal: bottom-right aligned)."""

    def __init__(self, lens, h, hd, causal, dtype=torch.bfloat16, kv_lens=None, hkv=None):
        kv_lens = kv_lens or lens
        hkv = hkv or h
        n, nk = sum(lens), sum(kv_lens)
        # fewer K/V heads: varlen_attn's enable_gqa where this torch has it, else FA2's own GQA
        # support, tried as is (a refusal shows as n/a)
        self.gqa = hkv != h and "enable_gqa" in _VARLEN_PARAMS
        self.q = torch.randn((n, h, hd), device="cuda", dtype=dtype, requires_grad=True)
        self.k = torch.randn((nk, hkv, hd), device="cuda", dtype=dtype, requires_grad=True)
        self.v = torch.randn((nk, hkv, hd), device="cuda", dtype=dtype, requires_grad=True)
        self.cu, self.cu_k = _cu(lens), _cu(kv_lens)
        self.max_len, self.max_k, self.causal = max(lens), max(kv_lens), causal
        self.do = torch.randn((n, h, hd), device="cuda", dtype=dtype)
        self.out = self._call()

    def _call(self):
        return fa2_call(self.q, self.k, self.v, self.cu, self.max_len, self.causal, self.cu_k, self.max_k, self.gqa)

    def fwd(self):
        with torch.no_grad():
            self._call()

    def bwd(self):
        torch.autograd.grad(self.out, (self.q, self.k, self.v), self.do, retain_graph=True)


class TorchSDPA:
    def __init__(self, b, s, h, hd, causal, backend, dtype=torch.bfloat16, hkv=None):
        from torch.nn.attention import SDPBackend
        self.backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]
        hkv = hkv or h
        mk = lambda heads: torch.randn((b, s, heads, hd), device="cuda", dtype=dtype).transpose(1, 2).requires_grad_(True)
        self.q, self.k, self.v = mk(h), mk(hkv), mk(hkv)
        self.kw = {"enable_gqa": True} if hkv != h else {}
        self.causal = causal
        self.do = torch.randn((b, s, h, hd), device="cuda", dtype=dtype).transpose(1, 2)
        self.out = self._call()

    def _call(self):
        from torch.nn.attention import sdpa_kernel
        with sdpa_kernel(self.backend):
            return F.scaled_dot_product_attention(self.q, self.k, self.v, is_causal=self.causal, **self.kw)

    def fwd(self):
        with torch.no_grad():
            self._call()

    def bwd(self):
        torch.autograd.grad(self.out, (self.q, self.k, self.v), self.do, retain_graph=True)


def tflops(flops, ms):
    return flops / (ms * 1e-3) / 1e12


def fmt(x):
    return f"{x:7.1f}" if x is not None else "    n/a"


def ratio(a, b):
    return f"{a / b:5.2f}" if (a is not None and b) else "  n/a"


def try_make(make):
    """make(), or None (said) where the backend does not support the shape."""
    try:
        return make()
    except Exception as e:  # a backend that does not support the shape: say so, keep going
        print(f"    ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
        return None


def time_side_by_side(objs, attr, reps):
    """Milliseconds of `attr` of each object (None stays None), all timed interleaved; if one fails
    while timing, each is timed alone instead and a failing one gives None."""
    live = [o for o in objs if o is not None]
    try:
        ts = iter(time_interleaved([getattr(o, attr) for o in live], reps))
        return [next(ts) if o is not None else None for o in objs]
    except Exception as e:
        print(f"    ({type(e).__name__}: {str(e).splitlines()[0][:100]}; timing each alone)")
        return [try_make(lambda o=o: time_ms(getattr(o, attr), reps)) if o is not None else None for o in objs]


def section_uniform(kern, reps, quick, out, hds=(64, 128), seqs=None, passes=("fwd", "bwd"), torch_too=True):
    tokens, hd_total = 16384, 2048
    print("\n== uniform: b*s = 16K tokens, h*d = 2048, bf16; TFLOP/s (ratio = ours / theirs) ==")
    hdr = (f"{'d':>4} {'causal':>6} {'s':>6} {'pass':>4} | {'ours':>7} {'FA2':>7} {'cuDNN':>7} | "
           f"{'/FA2':>5} {'/cuDNN':>6}")
    print(hdr)
    out.append("| d | causal | s | pass | ours | FA2 | cuDNN | ours/FA2 | ours/cuDNN |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    seqs = seqs or ([2048, 8192] if quick else [512, 1024, 2048, 4096, 8192, 16384])
    for hd in hds:
        h = hd_total // hd
        for causal in (False, True):
            for s in seqs:
                b = max(1, tokens // s)  # beyond 16K: one sequence of s tokens
                slices = [Slice(i, 0, s, s, causal) for i in range(b)]
                flops = forward_flops(slices, h, hd)
                # ours, FA2 and cuDNN timed interleaved, so that all three see the same GPU clocks
                ours = Ours(kern, [s] * b, slices, h, h, hd)
                fa2 = try_make(lambda: TorchFA2([s] * b, h, hd, causal)) if torch_too else None
                cud = try_make(lambda: TorchSDPA(b, s, h, hd, causal, "cudnn")) if torch_too else None
                t_of, t_ff, t_cf = time_side_by_side([ours, fa2, cud], "fwd", reps) if "fwd" in passes else [None] * 3
                t_ob, t_fb, t_cb = time_side_by_side([ours, fa2, cud], "bwd", reps) if "bwd" in passes else [None] * 3
                del ours, fa2, cud
                for pas, to, tf, tc, mult in (("fwd", t_of, t_ff, t_cf, 1.0), ("bwd", t_ob, t_fb, t_cb, 2.5)):
                    if to is None:
                        continue
                    o = tflops(flops * mult, to)
                    f_ = tflops(flops * mult, tf) if tf else None
                    c_ = tflops(flops * mult, tc) if tc else None
                    print(f"{hd:>4} {str(causal):>6} {s:>6} {pas:>4} | {fmt(o)} {fmt(f_)} {fmt(c_)} | "
                          f"{ratio(o, f_)} {ratio(o, c_):>6}")
                    out.append(f"| {hd} | {causal} | {s} | {pas} | {o:.1f} | {fmt(f_).strip()} | {fmt(c_).strip()} | "
                               f"{ratio(o, f_).strip()} | {ratio(o, c_).strip()} |")
                torch.cuda.empty_cache()


# (heads_q, heads_kv, head_dim, the model whose attention has that shape)
GQA_SHAPES = ((32, 8, 128, "Llama-3-8B"), (28, 4, 128, "Qwen2.5-7B"), (16, 2, 128, "Llama-3-70B, one rank of TP4"),
              (8, 1, 128, "Llama-3-70B, one rank of TP8"))


def parse_gqa_shapes(text):
    """--gqa-shapes: comma-separated HQ/HKV/D (e.g. 8/1/256,8/2/256), each named by its shape."""
    shapes = []
    for part in text.split(","):
        hq, hkv, hd = (int(x) for x in part.split("/"))
        if hq % hkv or hd not in (64, 128, 256):
            raise SystemExit(f"--gqa-shapes: {part}: HQ must be a multiple of HKV and D one of 64, 128, 256")
        shapes.append((hq, hkv, hd, f"{hq}/{hkv} d{hd}"))
    return tuple(shapes)


def section_gqa(kern, reps, quick, out, seqs=None, torch_too=True, shapes=GQA_SHAPES):
    """Grouped-query attention at the shapes of models trained with it: b*s = 16K tokens. Ours against
    ours on the same query heads with as many K/V heads (MHA: the same FLOPs), PyTorch's FA2
    (varlen_attn) and cuDNN (SDPA, enable_gqa), all four timed interleaved."""
    tokens = 16384
    seqs = seqs or ([8192] if quick else [2048, 8192, 16384])
    print("\n== gqa: b*s = 16K tokens, bf16; TFLOP/s (ratio = ours / theirs; MHA = ours with heads_kv = heads_q) ==")
    print(f"{'hq/hkv':>7} {'d':>4} {'causal':>6} {'s':>6} {'pass':>4} | {'ours':>7} {'MHA':>7} {'FA2':>7} {'cuDNN':>7} | "
          f"{'/MHA':>5} {'/FA2':>5} {'/cuDNN':>6}")
    out.append("")
    out.append("Grouped-query attention, b*s = 16K tokens, bf16 (MHA: ours with as many K/V heads as query heads, "
               "the same FLOPs; FA2 = varlen_attn, cuDNN = SDPA with enable_gqa; all four timed interleaved):")
    out.append("")
    out.append("| model | hq/hkv | d | causal | s | pass | ours | ours MHA | FA2 | cuDNN | ours/MHA | ours/FA2 | ours/cuDNN |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for hq, hkv, hd, model in shapes:
        for causal in (True, False):
            for s in seqs:
                b = max(1, tokens // s)
                slices = [Slice(i, 0, s, s, causal) for i in range(b)]
                flops = forward_flops(slices, hq, hd)
                ours = Ours(kern, [s] * b, slices, hq, hkv, hd)
                mha = Ours(kern, [s] * b, slices, hq, hq, hd)
                fa2 = try_make(lambda: TorchFA2([s] * b, hq, hd, causal, hkv=hkv)) if torch_too else None
                cud = try_make(lambda: TorchSDPA(b, s, hq, hd, causal, "cudnn", hkv=hkv)) if torch_too else None
                objs = [ours, mha, fa2, cud]
                times = {"fwd": time_side_by_side(objs, "fwd", reps), "bwd": time_side_by_side(objs, "bwd", reps)}
                del ours, mha, fa2, cud, objs
                for pas, mult in (("fwd", 1.0), ("bwd", 2.5)):
                    o, m, f_, c_ = (tflops(flops * mult, t) if t else None for t in times[pas])
                    print(f"{hq:>3}/{hkv:<3} {hd:>4} {str(causal):>6} {s:>6} {pas:>4} | {fmt(o)} {fmt(m)} {fmt(f_)} "
                          f"{fmt(c_)} | {ratio(o, m)} {ratio(o, f_)} {ratio(o, c_):>6}")
                    out.append(f"| {model} | {hq}/{hkv} | {hd} | {causal} | {s} | {pas} | {o:.1f} | {m:.1f} | "
                               f"{fmt(f_).strip()} | {fmt(c_).strip()} | {ratio(o, m).strip()} | "
                               f"{ratio(o, f_).strip()} | {ratio(o, c_).strip()} |")
                torch.cuda.empty_cache()


def pretrain_docs(total_tokens, seed):
    lens = json.load(open(os.path.join(HERE, "pretrain_doc_lengths_sample.json")))
    rng = random.Random(seed)
    docs, n = [], 0
    while n < total_tokens:
        x = rng.choice(lens)
        if x > total_tokens - n:  # whole documents only; the last few tokens close the batch
            if total_tokens - n > 256:
                continue
            x = total_tokens - n
        docs.append(x)
        n += x
    return docs


def section_varlen(kern, reps, out):
    docs = pretrain_docs(65536, 1)
    print(f"\n== varlen: {len(docs)} whole documents from the pretrain distribution, 64K tokens, causal, bf16 ==")
    print(f"   lengths: min {min(docs)}, max {max(docs)}")
    out.append("")
    out.append(f"Varlen mix: {len(docs)} whole documents (pretrain distribution), 65,536 tokens, causal, bf16:")
    out.append("")
    out.append("| d | pass | ours | FA2 | ours/FA2 |")
    out.append("|---|---|---|---|---|")
    for hd in (64, 128):
        h = 2048 // hd
        slices = [Slice(i, 0, n, n, True) for i, n in enumerate(docs)]
        flops = forward_flops(slices, h, hd)
        ours = Ours(kern, docs, slices, h, h, hd)
        fa2 = try_make(lambda: TorchFA2(docs, h, hd, True))
        t_of, t_ff = time_side_by_side([ours, fa2], "fwd", reps)
        t_ob, t_fb = time_side_by_side([ours, fa2], "bwd", reps)
        del ours, fa2
        for pas, to, tf, mult in (("fwd", t_of, t_ff, 1.0), ("bwd", t_ob, t_fb, 2.5)):
            o, f_ = tflops(flops * mult, to), (tflops(flops * mult, tf) if tf else None)
            print(f"  d{hd} {pas}: ours {fmt(o)}  FA2 {fmt(f_)}  ours/FA2 {ratio(o, f_)}")
            out.append(f"| {hd} | {pas} | {o:.1f} | {fmt(f_).strip()} | {ratio(o, f_).strip()} |")


def shard_batch(target_flops, h, hd, seed, grid=128):
    """Documents cut into query shards of 128..4K tokens, every inner cut on a multiple of `grid`
    (the planner's PlanOptions.cutAlignTokens, default 128; 1 = anywhere); each shard attends to its
    document prefix. Same rule as the Java bench (KernelBench.shardDocuments)."""
    rng = random.Random(seed)
    lens = json.load(open(os.path.join(HERE, "pretrain_doc_lengths_sample.json")))
    seg_lens, slices, flops = [], [], 0.0
    while flops < target_flops:
        n = rng.choice(lens)
        if n < 128:
            continue
        g = len(seg_lens)
        seg_lens.append(n)
        qs = 0
        while qs < n and flops < target_flops:
            q = min(n - qs, rng.randint(128, 4096))
            if qs + q < n:
                q = max(128, q // grid * grid)
                rest = n - qs - q
                if 0 < rest < 128:  # no shard under 128 rows: take the rest too, or leave 128 more for it
                    q = n - qs if n - qs <= 4096 else q - 128
            s = Slice(g, 0, qs + q, q, True)  # bottom-right: diagonal = qs
            slices.append(s)
            flops += forward_flops([s], h, hd)
            qs += q
    return seg_lens, slices


def rebatch_case(h, hd, grid=128, seed=7, long_s=16384):
    """The rebatching comparison's two sides: the shards (shard_batch) holding the FLOPs of one causal
    sequence of long_s tokens, and the length L of one causal sequence with exactly the shards' FLOPs
    (visible pairs L(L+1)/2). Returns (seg_lens, slices, L)."""
    target = forward_flops([Slice(0, 0, long_s, long_s, True)], h, hd)
    seg_lens, slices = shard_batch(target, h, hd, seed, grid)
    pairs = forward_flops(slices, h, hd) / (4.0 * hd * h)
    return seg_lens, slices, int(round((math.sqrt(8 * pairs + 1) - 1) / 2))


def rebatch_sides(h, hd, grid=128):
    """rebatch_case as the two workloads it compares, each (name, seg_lens, slices): the fused shards
    and the long sequence of the same FLOPs."""
    seg_lens, slices, L = rebatch_case(h, hd, grid)
    return [("fused shards", seg_lens, slices), ("long sequence", [L], [Slice(0, 0, L, L, True)])]


def section_rebatch(kern, reps, out, torch_too=True, grid=128):
    h, hd = 16, 128
    seg_lens, slices, L = rebatch_case(h, hd, grid)
    cuts = f"cuts on multiples of {grid}" if grid > 1 else "cuts anywhere"
    flops = forward_flops(slices, h, hd)
    flops_long = forward_flops([Slice(0, 0, L, L, True)], h, hd)
    # the same documents unsharded: a document's shards cover its rows [0, n) consecutively, so one
    # causal slice of those n rows has exactly the shards' visible pairs (the same FLOPs)
    covered = [0] * len(seg_lens)
    for sl in slices:
        covered[sl.segment] += sl.q_len
    whole = [Slice(g, 0, n, n, True) for g, n in enumerate(covered)]
    assert abs(forward_flops(whole, h, hd) - flops) < 1e-6 * flops
    qlens = [sl.q_len for sl in slices]
    print(f"\n== rebatch ({cuts}): {len(slices)} shards (q 128..4K, mean {sum(qlens) / len(qlens):.0f}) of {len(seg_lens)} documents, "
          f"{flops / 1e12:.2f} TFLOP fwd; long sequence {L} tokens; d128 h16 bf16 causal ==")
    fused = Ours(kern, seg_lens, slices, h, h, hd)
    docs = Ours(kern, covered, whole, h, h, hd)
    long_ = Ours(kern, [L], [Slice(0, 0, L, L, True)], h, h, hd)
    # one launch per shard: each shard its own layout over its own K/V copy
    singles = [Ours(kern, [sl.kv_len], [Slice(0, 0, sl.kv_len, sl.q_len, True)], h, h, hd) for sl in slices]

    def per_shard(pas):
        def run():
            for x in singles:
                getattr(x, pas)()
        return run

    # PyTorch's FA2 on the same shards (one fused varlen call, every shard with its own copy of its
    # document prefix as K/V, bottom-right causal) and on the long sequence
    fa2_shards = fa2_long = None
    if torch_too:
        fa2_shards = lambda: TorchFA2(qlens, h, hd, True, kv_lens=[sl.kv_len for sl in slices])
        fa2_long = lambda: TorchFA2([L], h, hd, True)

    out.append("")
    out.append(f"Rebatching ({cuts}): {len(slices)} causal query shards of 128..4K tokens (KV = document prefix, one K/V copy per "
               f"document) from {len(seg_lens)} pretrain documents, {flops / 1e12:.2f} TFLOP forward, d128, h16, bf16. "
               f"TFLOP/s of: ours fused over the shards; ours over the same documents unsharded (same FLOPs); ours "
               f"on one long sequence of {L} tokens (same FLOPs); ours with one launch per shard; PyTorch FA2 fused "
               f"over the shards and on the long sequence. The bwd_server row is the backward as the Java server "
               f"runs it: D = rowsum(dO*O) sent by the client, so no bwd_pre (PyTorch's backwards compute D: no FA2 "
               f"figures there):")
    out.append("")
    out.append("| pass | fused shards | whole documents | long sequence | per-shard launches | fused/long | "
               "fused/whole | fused/per-shard | FA2 fused shards | FA2 long | FA2 fused/long |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    # bwd_server: the backward as the Java server runs it (D sent by the client, no bwd_pre); PyTorch's
    # backwards compute D, so they have no such row
    for pas, mult in (("fwd", 1.0), ("bwd", 2.5), ("bwd_server", 2.5)):
        # the three that the ratios compare run interleaved (time_interleaved)
        tf, tw, tl = time_interleaved([getattr(fused, pas), getattr(docs, pas), getattr(long_, pas)], 3 * reps)
        tp = time_ms(per_shard(pas), max(3, reps // 3))
        a, w, b, c = (tflops(flops * mult, tf), tflops(flops * mult, tw), tflops(flops_long * mult, tl),
                      tflops(flops * mult, tp))
        fs, fl = None, None
        if fa2_shards and pas != "bwd_server":  # FA2's two timed interleaved too
            fs, fl = time_side_by_side([try_make(fa2_shards), try_make(fa2_long)], pas, reps)
        fa, fb = (tflops(flops * mult, fs) if fs else None), (tflops(flops_long * mult, fl) if fl else None)
        print(f"  {pas}: fused {a:7.1f}  whole docs {w:7.1f}  long {b:7.1f}  per-shard {c:7.1f}  fused/long {a / b:5.2f}  "
              f"fused/whole {a / w:5.2f}  fused/per-shard {a / c:5.2f}  | FA2 fused {fmt(fa)}  FA2 long {fmt(fb)}  "
              f"FA2 fused/long {ratio(fa, fb)}")
        out.append(f"| {pas} | {a:.1f} | {w:.1f} | {b:.1f} | {c:.1f} | {a / b:.2f} | {a / w:.2f} | {a / c:.2f} | "
                   f"{fmt(fa).strip()} | {fmt(fb).strip()} | {ratio(fa, fb).strip()} |")


def main():
    ap = argparse.ArgumentParser()
    add_kernel_arguments(ap)
    ap.add_argument("--sections", default="uniform,varlen,rebatch")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--host-gaps", action="store_true",
                    help="time each call without the GPU sleep that covers the host's enqueueing of it (before NOTES v84)")
    ap.add_argument("--markdown", default=None, help="write the tables as markdown here")
    ap.add_argument("--hds", default="64,128", help="uniform section: head dims")
    ap.add_argument("--seqs", default=None,
                    help="uniform and gqa sections: sequence lengths, e.g. 4096,16384 (b*s = 16K tokens; one sequence beyond)")
    ap.add_argument("--passes", default="fwd,bwd", help="uniform section: fwd and/or bwd")
    ap.add_argument("--gqa-shapes", default=None,
                    help="gqa section: HQ/HKV/D shapes instead of the models', e.g. 8/1/256,8/2/256")
    ap.add_argument("--no-torch", action="store_true", help="uniform, gqa and rebatch sections: skip the PyTorch baselines")
    ap.add_argument("--cut-grids", default="128,1",
                    help="rebatch section: one run per cut grid (128 = the planner's default, 1 = cuts anywhere)")
    args = ap.parse_args()
    global COVER_HOST
    COVER_HOST = not args.host_gaps
    torch.manual_seed(0)
    kern = kernels_from_args(args)
    print(f"bench.py: GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, fatbin {args.fatbin}")
    out = []
    sections = args.sections.split(",")
    if "uniform" in sections:
        section_uniform(kern, args.reps, args.quick, out, tuple(int(x) for x in args.hds.split(",")),
                        [int(x) for x in args.seqs.split(",")] if args.seqs else None,
                        tuple(args.passes.split(",")), not args.no_torch)
    if "varlen" in sections:
        section_varlen(kern, args.reps, out)
    if "gqa" in sections:
        section_gqa(kern, args.reps, args.quick, out, [int(x) for x in args.seqs.split(",")] if args.seqs else None,
                    not args.no_torch, parse_gqa_shapes(args.gqa_shapes) if args.gqa_shapes else GQA_SHAPES)
    if "rebatch" in sections:
        for grid in (int(x) for x in args.cut_grids.split(",")):
            section_rebatch(kern, args.reps, out, not args.no_torch, grid)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
