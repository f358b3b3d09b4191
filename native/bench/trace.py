"""Where the warp-specialized kernels' consumers spend their time, from the timing probes of a build
with -DDISTCA_TRACE_PROBES (native/src/trace.cuh: consumer thread 0 of each CTA, and the producer's
recording thread, write the SM clock at their waits and steps). For each workload, one traced pass
after warm-up, summed over the CTAs.

--pass bwd (bwd_ws_sm90.cuh):
  steps          query-tile steps by kind (full: no mask; masked; upper: the key tile's upper 64 keys
                 hidden, bwd_upper_hidden) with their mean cycles from the stage's full barrier to the
                 step's end
  full waits     cycles waiting for a stage (Q/dO/LSE/D loads, the claiming warps)
  tile start     cycles from the end of a key tile (after its dK/dV stores) to its successor's first
                 query tile: mostly the K/V barrier
  tile end       cycles from a key tile's last step to the end of its dK/dV stores (and of those, the
                 successor's hand-over and the wait until the last dQ reduce-add has read the
                 buffers the stores go through)
  next tile      (within the tile end) the wait for the producer's hand-over of the next key
                 tile (bar_tile). Since v16b the producer hands over the tile's records; until v16a
                 the consumers read them from global memory (NOTES v16)
  span           first event to the CTA's exit
  key-tile change  (with the producer's probes) when, after the consumers' last step of a key tile,
                 the producer reached its wait for the K/V buffer, issued the next tile's K, the
                 consumers' dK/dV stores ended and the next K and V landed

--pass fwd (fwd_ws_sm90.cuh):
  steps          key blocks by kind (full: no mask; masked) with their mean cycles from the previous
                 block's end (a tile's first block: from its K stage's full barrier) to the block's
                 end; since v19 the consumers wait for block b + 1's K inside block b, so a block's
                 span includes that wait
  block waits    cycles waiting for a K stage after a query tile's first block (also inside the
                 steps above)
  tile start     cycles from the end of a query tile's epilogue to its successor's first block: the Q
                 barrier, then the first K/V stage
  epilogue       cycles from a query tile's last block to the end of its LSE and O stores (or, for a
                 tile the store thread sends by TMA, of O's staging)
  first K/V      (with the producer's probes) when the producer issued a tile's first K/V stage and
                 how long before the consumers asked for it

Build the image: OUTPUT=native/build/var/trace.fatbin GENCODE="-gencode=arch=compute_90a,code=sm_90a"
native/build.sh -DDISTCA_TRACE_PROBES.
Usage: python3 native/bench/trace.py --fatbin F [--pass fwd|bwd|both] [--seqs 512,16384] [--hd 64|128|256]
       [--full] [--heads HQ/HKV] [--bwd-splits N]
"""
import argparse
import ctypes
import os
import sys
from collections import defaultdict

import torch
from cupy.cuda import driver, runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Ours, rebatch_sides  # noqa: E402
from distca_host import Kernels, Slice  # noqa: E402

EVENTS = 16384  # kTraceEvents
TILE_WAIT, TILE_READY, FULL_WAIT, FULL_READY, STEP_END, TILE_END, EXIT, KV_READY, STORE_READY = range(1, 10)
REC_BEGIN, REC_WAIT = 10, 11
P_KV_WAIT, P_KV_ISSUE = 16, 17
# the forward's (FwdTraceEvent)
F_Q_WAIT, F_Q_READY, F_FULL_WAIT, F_FULL_READY, F_STEP_END, F_EPI_END, F_EXIT, F_SETUP_END, F_EPI_STAGED, \
    F_EPI_STORED = range(32, 42)
F_P_Q_WAIT, F_P_Q_ISSUE, F_P_KV_WAIT, F_P_KV_ISSUE = range(48, 52)
KINDS = ("full", "masked", "upper")


def read_trace(kern, ctas, which=""):
    lens_ptr = driver.moduleGetGlobal(kern.module, f"distca_trace{which}_len")
    trace_ptr = driver.moduleGetGlobal(kern.module, f"distca_trace{which}")
    lens = (ctypes.c_int * ctas)()
    runtime.memcpy(ctypes.addressof(lens), lens_ptr, 4 * ctas, runtime.memcpyDeviceToHost)
    out = []
    for c in range(ctas):
        n = lens[c]
        buf = (ctypes.c_uint64 * max(1, n))()
        if n:
            runtime.memcpy(ctypes.addressof(buf), trace_ptr + 8 * c * EVENTS, 8 * n, runtime.memcpyDeviceToHost)
        out.append([(int(v) >> 56, (int(v) >> 48) & 0xFF, int(v) & 0xFFFFFFFFFFFF) for v in buf[:n]])
    return out


def clear_trace(kern, ctas):
    for which in ("", "_p"):
        runtime.memset(driver.moduleGetGlobal(kern.module, f"distca_trace{which}_len"), 0, 4 * ctas)


def transitions(consumer, producer):
    """The key-tile changes, both sides' clocks (one SM each): from the consumers' last step of tile
    j - 1 (their arrival on the K/V barrier's empty side) to the producer reaching its wait for it,
    issuing tile j's K/V, the consumers' dK/dV stores ending, and K/V landing."""
    sums = defaultdict(float)
    n = 0
    for cev, pev in zip(consumer, producer):
        last_step = {}  # tile index -> clock of its last step end
        tile_end, kv_ready = {}, {}
        j = -1
        for kind, _, t in cev:
            if kind == TILE_WAIT:
                j += 1
            elif kind == STEP_END:
                last_step[j] = t
            elif kind == TILE_END:
                tile_end[j] = t
            elif kind == KV_READY:
                kv_ready[j] = t
        waits = [t for kind, _, t in pev if kind == P_KV_WAIT]
        issues = [t for kind, _, t in pev if kind == P_KV_ISSUE]
        for jj in range(1, min(len(issues), len(waits))):
            a = last_step.get(jj - 1)
            if a is None or jj - 1 not in tile_end or jj not in kv_ready:
                continue
            sums["producer at its wait"] += waits[jj] - a
            sums["K/V issued"] += issues[jj] - a
            sums["dK/dV stores done"] += tile_end[jj - 1] - a
            sums["K/V landed"] += kv_ready[jj] - a
            n += 1
    if n:
        print("  key-tile change, mean cycles after the consumers' last step of the previous tile:")
        for k, v in sums.items():
            print(f"    {k:22s} {v / n:8.0f}")


def print_steps(name, events_per_cta, tiles, tile_word, step_word, labels, steps, span, truncated):
    """The header line and one line per step kind (labels[kind]: count, mean cycles, share of the
    CTAs' spans); returns the steps' cycles."""
    n_steps = sum(c for c, _ in steps.values())
    print(f"\n{name}: {len([e for e in events_per_cta if e])} CTAs, {tiles} {tile_word}, {n_steps} {step_word}"
          + (f" ({truncated} CTAs' traces truncated)" if truncated else ""))
    for k in sorted(steps):
        c, cy = steps[k]
        print(f"  {step_word} {labels[k]:>6}: {c:7d}  mean {cy / c:8.0f} cycles  ({cy / span:6.1%} of the CTAs' spans)")
    return sum(cy for _, cy in steps.values())


def summarize(name, events_per_cta):
    steps = defaultdict(lambda: [0, 0])  # kind -> [count, cycles]
    waits = tile_start = tile_end = span = kv_wait = store_wait = 0
    tiles = truncated = 0
    spans = []
    for ev in events_per_cta:
        if not ev:
            continue
        if len(ev) >= EVENTS:
            truncated += 1
        spans.append(ev[-1][2] - ev[0][2])
        span += spans[-1]
        last_end = None  # the previous key tile's end
        ready = last_step = None
        for kind, arg, t in ev:
            if kind == TILE_WAIT:
                tiles += 1
                last_end = t if last_end is None else last_end
                tile_wait = t
            elif kind == KV_READY:
                kv_wait += t - tile_wait
            elif kind == FULL_WAIT:
                wait_start = t
                if last_end is not None:  # the first query tile of a key tile
                    tile_start += t - last_end
                    last_end = None
            elif kind == FULL_READY:
                waits += t - wait_start
                ready = t
            elif kind == STEP_END:
                steps[arg][0] += 1
                steps[arg][1] += t - ready
                last_step = t
            elif kind == STORE_READY:
                if last_step is not None:
                    store_wait += t - last_step
            elif kind == TILE_END:
                if last_step is not None:
                    tile_end += t - last_step
                last_step = None
                last_end = t
            elif kind == EXIT:
                last_end = None
    n_steps = sum(c for c, _ in steps.values())
    handover = n_handover = 0  # the consumers' waits for the producer's next key tile
    for ev in events_per_cta:
        t_begin = None
        for kind, _, t in ev:
            if kind == REC_BEGIN:
                t_begin = t
            elif kind == REC_WAIT and t_begin is not None:
                handover += t - t_begin
                n_handover += 1
                t_begin = None
    step_cycles = print_steps(name, events_per_cta, tiles, "key tiles", "steps", KINDS, steps, span, truncated)
    print(f"  full waits       : mean {waits / max(1, n_steps):8.0f} cycles per step  ({waits / span:6.1%})")
    print(f"  tile start       : mean {tile_start / max(1, tiles):8.0f} cycles per key tile  ({tile_start / span:6.1%}),"
          f" of which waiting for K/V {kv_wait / max(1, tiles):.0f}")
    print(f"  tile end         : mean {tile_end / max(1, tiles):8.0f} cycles per key tile  ({tile_end / span:6.1%}),"
          f" of which the next tile's hand-over and the wait for the last dQ reduce-add's read"
          f" {store_wait / max(1, tiles):.0f}")
    if n_handover:
        print(f"  next tile        : waiting for the producer's hand-over {handover / n_handover:.0f} cycles per key tile")
    rest = span - step_cycles - waits - tile_start - tile_end
    print(f"  span             : {span / max(1, len(events_per_cta)):10.0f} cycles per CTA; unaccounted {rest / span:6.1%}")
    if spans:  # the CTAs start together, so the spread of their spans is the schedule's tail
        print(f"  schedule         : the CTAs' spans {min(spans)}..{max(spans)} cycles, mean/longest"
              f" {sum(spans) / len(spans) / max(spans):.3f}")
        # per CTA: its key tiles' step counts, and its cycles per step (work or speed?)
        # and where its cycles a step go: the wait for the stage (loads) against the step itself
        # (full barrier to step end), in all and by quarter of its steps (does it slow as it goes?)
        per_cta = []
        for ev in events_per_cta:
            if not ev:
                continue
            counts, n = [], 0
            per_step = []  # (wait, step) cycles of each step, in order
            wait_start = ready = wait = None
            for kind, _, t in ev:
                if kind == TILE_WAIT and n:
                    counts.append(n)
                    n = 0
                elif kind == FULL_WAIT:
                    wait_start = t
                elif kind == FULL_READY:
                    ready, wait = t, t - wait_start
                elif kind == STEP_END:
                    n += 1
                    per_step.append((wait, t - ready))
            if n:
                counts.append(n)
            per_cta.append((ev[-1][2] - ev[0][2], counts, per_step))
        per_cta.sort(key=lambda x: -x[0])

        def split(per_step):
            k = len(per_step)
            w = sum(a for a, _ in per_step) / max(1, k)
            st = sum(b for _, b in per_step) / max(1, k)
            quarters = [per_step[i * k // 4:(i + 1) * k // 4] for i in range(4)]
            return w, st, [sum(a + b for a, b in q) / max(1, len(q)) for q in quarters]
        for label, rows in (("longest", per_cta[:4]), ("shortest", per_cta[-3:])):
            for sp, counts, per_step in rows:
                steps_n = sum(counts)
                w, st, q = split(per_step)
                print(f"    {label:8s} CTA: span {sp} cycles, {steps_n} steps ({sp / max(1, steps_n):.0f} cycles a step),"
                      f" key tiles of {counts[:8]}{' ...' if len(counts) > 8 else ''}")
                print(f"             wait {w:.0f} + step {st:.0f} cycles a step; by quarter of its steps"
                      f" {' / '.join(f'{x:.0f}' for x in q)}")
        # all CTAs by the longest key tile they ran (its steps): the long items' CTAs against the rest
        classes = defaultdict(list)
        top = max((max(c) for _, c, _ in per_cta if c), default=0)
        for sp, counts, per_step in per_cta:
            if counts:
                classes["longest item" if max(counts) * 4 >= top * 3 else "others"].append(per_step)
        for name_, rows in sorted(classes.items()):
            flat = [x for r in rows for x in r]
            w, st, q = split(flat)
            print(f"    {name_:13s}: {len(rows)} CTAs, wait {w:.0f} + step {st:.0f} cycles a step")


def summarize_fwd(name, consumer, producer):
    steps = defaultdict(lambda: [0, 0])  # masked -> [count, cycles]
    waits = n_waits = start = q_wait = first_kv = epi = span = setup = staged = stored = 0
    tiles = truncated = 0
    lead = n_lead = 0
    for ev, pev in zip(consumer, producer):
        if not ev:
            continue
        if len(ev) >= EVENTS:
            truncated += 1
        span += ev[-1][2] - ev[0][2]
        prev_end = ev[0][2]
        b = 0
        first = False  # the next K wait is a tile's first
        ready = last_step = wait_start = None
        first_asks = []  # the clock at which the consumers waited for each tile's first block
        for kind, arg, t in ev:
            if kind == F_Q_WAIT:
                q_start = t
            elif kind == F_Q_READY:
                q_wait += t - q_start
                q_ready = t
                b = 0
                first = True
            elif kind == F_FULL_WAIT:
                wait_start = t
                if first:
                    first_asks.append(t)
            elif kind == F_FULL_READY:
                if first:
                    tiles += 1
                    start += t - prev_end
                    first_kv += t - wait_start
                    ready = t
                    first = False
                else:
                    waits += t - wait_start
                    n_waits += 1
            elif kind == F_STEP_END:
                # a block: from the previous block's end (a tile's first: from its K landing) to its
                # end. The consumers wait for block b + 1's K before block b ends (the pipelined
                # loop, NOTES v19), so a block's span includes that wait.
                steps[arg][0] += 1
                steps[arg][1] += t - (ready if b == 0 else last_step)
                last_step = t
                b += 1
            elif kind == F_SETUP_END:
                setup += t - q_ready
            elif kind == F_EPI_STAGED:
                staged += t - last_step
            elif kind == F_EPI_STORED:
                stored += t - last_step
            elif kind == F_EPI_END:
                epi += t - last_step
                prev_end = t
        issues = [t for kind, arg, t in pev if kind == F_P_KV_ISSUE and arg == 0]
        for ask, issued in zip(first_asks, issues):
            lead += ask - issued
            n_lead += 1
    step_cycles = print_steps(name, consumer, tiles, "query tiles", "blocks", ("full", "masked"), steps, span,
                              truncated)
    print(f"  block waits      : mean {waits / max(1, n_waits):8.0f} cycles per later block  ({waits / span:6.1%})")
    print(f"  tile start       : mean {start / max(1, tiles):8.0f} cycles per query tile  ({start / span:6.1%}),"
          f" of which the Q barrier {q_wait / max(1, tiles):.0f}, the tile's set-up {setup / max(1, tiles):.0f}"
          f" and the first K/V stage {first_kv / max(1, tiles):.0f}")
    print(f"  epilogue         : mean {epi / max(1, tiles):8.0f} cycles per query tile  ({epi / span:6.1%}),"
          f" O staged in shared memory after {staged / max(1, tiles):.0f}, stored after {stored / max(1, tiles):.0f}")
    if n_lead:
        print(f"  first K/V        : issued {lead / n_lead:.0f} cycles before the consumers asked for it")
    rest = span - step_cycles - waits - start - epi
    print(f"  span             : {span / max(1, len(consumer)):10.0f} cycles per CTA; unaccounted {rest / span:6.1%}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fatbin", required=True, help="an image built with -DDISTCA_TRACE_PROBES")
    ap.add_argument("--pass", dest="pas", default="both", choices=("fwd", "bwd", "both"))
    ap.add_argument("--seqs", default="512,16384", help="uniform causal shapes (b*s = 16K) to trace too")
    ap.add_argument("--hd", type=int, default=128, choices=(64, 128, 256), help="head dim (heads: 2048 / hd)")
    ap.add_argument("--full", action="store_true", help="the uniform shapes without the causal mask")
    ap.add_argument("--heads", default=None, help="HQ/HKV: the uniform shapes only, with these heads (GQA)")
    ap.add_argument("--bwd-splits", type=int, default=None, help="Kernels.bwd_splits (distca_host.py --bwd-splits)")
    args = ap.parse_args()
    kern = Kernels(args.fatbin, bwd_splits=args.bwd_splits)
    ctas = kern.ctas
    hd = args.hd
    h = 2048 // hd
    hq, hkv = (int(x) for x in args.heads.split("/")) if args.heads else (h, h)
    cases = [] if args.heads else [(name, Ours(kern, seg_lens, slices, h, h, hd))
                                   for name, seg_lens, slices in rebatch_sides(h, hd)]
    for s in (int(x) for x in args.seqs.split(",") if x):
        b = max(1, 16384 // s)
        cases.append((f"{'full' if args.full else 'causal'} {s}" + (f" {hq}/{hkv}" if args.heads else ""),
                      Ours(kern, [s] * b, [Slice(i, 0, s, s, not args.full) for i in range(b)], hq, hkv, hd)))
    print(f"trace.py: GPU {torch.cuda.get_device_name()}, {ctas} CTAs, fatbin {args.fatbin}")
    for pas in (("fwd", "bwd") if args.pas == "both" else (args.pas,)):
        print(f"\n=== {pas} ===")
        for name, w in cases:
            run = getattr(w, pas)
            for _ in range(3):
                run()
            torch.cuda.synchronize()
            clear_trace(kern, ctas)
            run()
            torch.cuda.synchronize()
            consumer, producer = read_trace(kern, ctas), read_trace(kern, ctas, "_p")
            if pas == "fwd":
                summarize_fwd(name, consumer, producer)
            else:
                summarize(name, consumer)
                transitions(consumer, producer)


if __name__ == "__main__":
    main()
