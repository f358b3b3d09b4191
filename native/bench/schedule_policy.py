"""The backward's group splits and the persistent kernels' work bands: the schedule policy the Python
host (distca_host.Kernels) applies to a fused batch before its launches, kept free of torch and CUDA
so that it runs anywhere (the Java host's FusedBatchPlan / WorkBands apply the same policy, and
attention-server's SchedulePolicyParityTest compares the two on a grid of batches through
`python3 native/bench/schedule_policy.py --cases`). distca_attn.h sections 9 (group splits) and 11
(work bands), 13 (steps of 128 query rows); native/NOTES.md v62-v81 for what each rule measured."""
import math
import struct
import sys


def _lpt_makespan(costs, bins):
    """The longest bin's load when `costs` go, most expensive first, each to the least loaded of
    `bins` (what the persistent kernels' tile counter does with a longest-first work list of one head:
    claim_makespan's schedule)."""
    return claim_makespan(sorted(costs, reverse=True), 1, 1, bins)


def split_heads(j, n, group):
    """The query heads [h0, h1) of the GQA group that piece j of a key tile split n ways walks
    (distca_attn.h section 9; FusedBatchPlan.splitHeadBegin in the Java host)."""
    return j * group // n, (j + 1) * group // n


# group_splits' cost of one more work item, in backward steps (block_m query rows each): its K/V
# load and its dK/dV output (NOTES v63; 3, nearer the ~14,000 cycles an H100 trace puts on a key
# tile's end, cost 4/1 and d64 8/1 at 1K 2-11% in v65)
SPLIT_OVERHEAD_STEPS = 2
# group_splits' pieces walk two query heads at least (groups of 4 heads and more) where the longest
# key tile's walk of one head is SPLIT_PAIRS_STEPS[0] to [1] steps, causal sequences of 2K-4K tokens
# at block_m 64 (NOTES v65: there 1.01-1.6x on an H100, 1.02-1.27x on an H200; the same cap on
# longer walks lost up to 8% at 8K-16K)
SPLIT_PAIRS_STEPS = (32, 64)
# ... and where it is shorter than SPLIT_PAIRS_STEPS[0] steps (causal sequences of up to 1K tokens at
# block_m 64), a key tile has at most this many pieces (NOTES v65: 16/1 1.22x, 8/1 1.04-1.13x, 4/1 at
# 1K 1.09x on an H100 against v64's more pieces or none)
SPLIT_SHORT_MAX_PIECES = 2
# ... and where it has SPLIT_PAIRS_STEPS[0] to [1] steps, at most this many pieces (so groups of 10
# heads and more; NOTES v68: 16/1 and 32/1 at 2K 1.39-1.49x on an H100, 1.02-1.28x on an H200, 16/1
# at 4K 0.975 / 0.994)
SPLIT_PAIRS_MAX_PIECES = 4
# In batches of causal slices only, in groups of SPLIT_UNIFORM_MIN_GROUP heads and more whose longest key
# tile's walk of one head has SPLIT_UNIFORM_STEPS[0] up to (not including) [1] steps of at most
# SPLIT_UNIFORM_MAX_BLOCK_M query rows (causal documents of 2K up to 4K tokens at head_dim 128), every
# item of a split batch gets the same, largest allowed number of pieces, not the model's fewer pieces
# for the shorter items (NOTES v70: on an H100 12/1 at 2K 1.07-1.09x, 16/2 on a mix of documents up to
# 2K 1.10x, 8/1 there 1.05x, elsewhere 0.99-1.03x; on an H200 16/2 on that mix 1.075x, 8/1 1.03x,
# elsewhere 0.995-1.03x; groups under 8 heads 0.98-1.01 on the H200, 8/2 on mixes 0.975: left alone) ...
SPLIT_UNIFORM_MIN_GROUP = 8
SPLIT_UNIFORM_STEPS = (32, 64)
# ... at steps of at most this many query rows: head_dim 128's 64 (at head_dim 64's 128-row steps the
# lean splits below read 1.02 for 16/2 and 0.975-0.98 for 32/4 at 4K on the H100).
SPLIT_UNIFORM_MAX_BLOCK_M = 64
# ... and where that walk has SPLIT_UNIFORM_STEPS[1] steps or more (causal documents from 4K tokens), a
# split batch's items all get min(group / 2, SPLIT_UNIFORM_LONG_MAX_PIECES) pieces (NOTES v71: pieces of
# two heads up to groups of 16, of three to eight heads in larger ones; on an H100 24/1 to 64/1 at
# 8K-16K 1.24-1.61x, 32/2 on mixes of documents up to 6K-8K 1.10-1.15x, 16/1 1.01-1.05x, 8/1 and 12/1
# 1.00-1.03x; on an H200 1.00-1.19x; shapes the model leaves whole unchanged) ...
SPLIT_UNIFORM_LONG_MAX_PIECES = 8
# ... but in groups of more than 4 x that many heads, pieces of at most four heads where the longest walk
# has SPLIT_UNIFORM_STEPS_PER_PIECE steps for each (NOTES v72: 40/1, 48/1, 64/1 at 8K-16K and on mixes
# of documents up to 6K-8K 1.003-1.086x on an H100, 0.997-1.013 on an H200; sixteen pieces at 4K read
# 0.65-0.78 on the H100, and pieces of two heads in groups of 24 0.97-1.00) ...
SPLIT_UNIFORM_STEPS_PER_PIECE = 8
# ... and on a GPU with less DRAM bandwidth per SM than this (bytes/s; an H100 SXM has 25.4 GB/s, an
# H200 36.5), those batches split even where the schedule model finds no gain: their unsplit (chunked)
# walks over many heads miss the L2, which the model does not see, and on the H100 those misses cost
# more than the split kernel's longer steps (NOTES v69: 32/2 at 2K 1.14x, 24/2 1.12-1.14x, 16/2
# 1.05x, varlen mixes of documents up to 2K 1.00-1.12x; on the H200 the same splits read 0.93-1.01,
# non-causal walks, whose key tiles stay on the same query tiles, 0.90-0.93 on the H100, and walks
# under 32 steps, two pieces a key tile, 1.00-1.08x at uniform 1K but 0.91-0.93 on a mix of documents
# up to 1K)
SPLIT_LEAN_DRAM_BYTES_PER_SM = 30e9
# From this head dim (256: its 64-key tiles), a causal batch split where the longest walk of one head
# is under SPLIT_PAIRS_STEPS[0] steps splits every item into the same short_max_pieces pieces, not
# the model's pieces for the longest items only (NOTES v79, H200, d256 backward against the model's
# pieces: 8/1 and 6/1 on mixes of documents up to 1K-2K +6-10%, 16/1 +2.5-4%, 4/1 +0.3-1.9%; against
# no splits 8/1 +5-11%, but 16/1 on mixes up to 1K-1.2K 0.95)
SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM = 256
# In groups of SPLIT_SHORT_WIDE_MIN_GROUP heads and more whose longest one-head walk has
# SPLIT_SHORT_WIDE_MIN_STEPS up to (not including) SPLIT_PAIRS_STEPS[0] steps, an item has at most
# SPLIT_PAIRS_MAX_PIECES pieces, not SPLIT_SHORT_MAX_PIECES (NOTES v80, H200, d128 backward against two:
# 12/1 to 32/1 at 1K and on mixes of documents up to 1K-2K +4-21%, 24/2 and 32/2 +5-9% (24/2 on one mix
# 0.98); at 512 (8 steps), under the bound, four read 0.88; d64 on its 64-row steps likewise, but 16/1 at
# 1K 0.97-0.98)
SPLIT_SHORT_WIDE_MIN_GROUP = 12
SPLIT_SHORT_WIDE_MIN_STEPS = 12
# From this head dim (256), a causal batch in GQA groups of L2_ORDER_GROUPS[0] to [1] heads (the sizes
# measured) whose longest one-head walk has L2_ORDER_MIN_STEPS up to (not including) SPLIT_PAIRS_STEPS[1]
# steps splits every key tile into min(group / 2, SPLIT_PAIRS_MAX_PIECES) pieces, whatever the schedule
# model finds, the work list ordered by the pieces' head ranges first and without bands: the CTAs running
# side by side then walk the same few heads, whose Q/dO tiles and dQ rows stay in the L2, where a key
# tile's walk of its whole group (or the pieces longest first) reads every head's at once (NOTES v79,
# H200, d256 backward against the policy without it: 8/1, 16/1, 16/2 and 32/4 at 1K-2K and on mixes of
# documents up to 1K-2K +6-31%, up to 3K 1.00-1.25; in a trial without the bounds groups of 4 lost 4-20%,
# groups of 6 read 0.95-1.07, walks of 8-10 steps lost up to 12%)
L2_ORDER_MIN_HEAD_DIM = 256
L2_ORDER_GROUPS = (8, 16)
L2_ORDER_MIN_STEPS = 12
# ... and a causal batch in larger groups (over L2_ORDER_GROUPS[1] heads, up to the split kernel's 64), from
# walks of L2_ORDER_SHORT_MIN_STEPS steps, every key tile into L2_ORDER_WIDE_PIECES[0] pieces (groups of up to 32 heads) or [1]
# (more), at most group / 2 (NOTES v80, H200, d256 backward against v79's policy, 512 to 16K and mixes
# up to 8K, two rounds: 20/1 to 64/2 +4-89%, 20/1 on the 8K mix 0.98; the policy's longest-first pieces
# there walk a whole group's Q/dO tiles at once)
L2_ORDER_WIDE_PIECES = (8, 16)
# ... and groups of L2_ORDER_GROUPS[0] to [1] heads whose walks are longer (SPLIT_PAIRS_STEPS[1] steps
# and more) where there are L2_ORDER_LONG_MIN_HEADS_KV K/V heads or more (NOTES v80, H200, d256: 16/2,
# 24/2, 32/2, 32/4, 48/4, 64/4, 64/8 at 4K-16K and on mixes up to 6K-8K +2-59%; with one K/V head the
# mixes lost 6-14%: fewer items, so the head order's later start of long pieces shows in the schedule)
L2_ORDER_LONG_MIN_HEADS_KV = 2
# ... and in groups of L2_ORDER_SHORT_MIN_GROUP to L2_ORDER_GROUPS[1] heads from walks of
# L2_ORDER_SHORT_MIN_STEPS steps, not L2_ORDER_MIN_STEPS (NOTES v80, H200, d256, 512 and mixes of
# documents up to 400-700 tokens: 12/1 +4-9%, 16/1 +9-15%, 24/2 +0-6%, 32/2 +6-24%; walks of 4 steps
# lost 9-15%, groups of 8 lost 2-23% at 6-11 steps)
L2_ORDER_SHORT_MIN_GROUP = 12
L2_ORDER_SHORT_MIN_STEPS = 6


def l2_order_pieces(costs, group, block_m, causal, head_dim, wide=True, heads_kv=1):
    """The pieces of every key tile under L2_ORDER_MIN_HEAD_DIM's rule (NOTES v79; groups over 16
    heads, longer walks with several K/V heads and, in groups of 12-16, shorter walks v80;
    wide=False: v79's bounds alone, to measure), or 0 where it does not apply; the hosts then order the split work list by the pieces' head ranges
    first and cut no bands. costs: each key tile's query rows for one head. FusedBatchPlan.l2OrderPieces
    in the Java host."""
    if head_dim < L2_ORDER_MIN_HEAD_DIM or not causal or group < L2_ORDER_GROUPS[0] or group > 64 or not costs:
        return 0
    longest = max(costs)
    if group > L2_ORDER_GROUPS[1]:  # (measured from 8-step walks; the floor of groups of 12-16 below)
        if not wide or longest < L2_ORDER_SHORT_MIN_STEPS * block_m:
            return 0
        return min(group // 2, L2_ORDER_WIDE_PIECES[0] if group <= 32 else L2_ORDER_WIDE_PIECES[1])
    shortest_walk = L2_ORDER_SHORT_MIN_STEPS if wide and group >= L2_ORDER_SHORT_MIN_GROUP else L2_ORDER_MIN_STEPS
    if shortest_walk * block_m <= longest < SPLIT_PAIRS_STEPS[1] * block_m or \
            (wide and heads_kv >= L2_ORDER_LONG_MIN_HEADS_KV and longest >= SPLIT_PAIRS_STEPS[1] * block_m):
        return min(group // 2, SPLIT_PAIRS_MAX_PIECES)
    return 0


def group_splits(costs, heads_kv, group, sms, block_m, kappas=(2, 3, 4, 6, 8, 12, 16), step_cost=0.06,
                 fixed_items=7, overhead_steps=SPLIT_OVERHEAD_STEPS, pairs_steps=SPLIT_PAIRS_STEPS,
                 short_max_pieces=SPLIT_SHORT_MAX_PIECES, pairs_max_pieces=SPLIT_PAIRS_MAX_PIECES, lean_dram=False,
                 causal=False, uniform=True, long_steps_per_piece=SPLIT_UNIFORM_STEPS_PER_PIECE, short_uniform=False,
                 short_wide=True):
    """distca_attn.h section 9: how many group splits each backward work item gets (a list, one per
    item of `costs`), or None where splitting does not pay. costs: each item's work for one query
    head (query rows that see its key tile); block_m: the query rows of a backward step; one more
    work item costs overhead_steps steps (its K/V load and dK/dV output). Splitting into pieces of
    at most C / (kappa * sms) (C: all the work) for the kappa whose longest-first schedule on `sms`
    SMs ends first, if that, times 1 + step_cost plus fixed_items overheads (the split kernel's
    longer steps and its dK/dV workspace, as measured on an H200 from 512 to 16K tokens: NOTES
    v63), ends before the unsplit schedule; only for groups of 2..64 heads, and only where the
    longest item exceeds a quarter of an SM's share. In groups of 4 heads and more the pieces walk
    two heads at least where the longest item's walk of one head has pairs_steps[0] to pairs_steps[1]
    steps (and an item at most pairs_max_pieces pieces there: NOTES v68), and an item has at most
    short_max_pieces pieces where that walk is shorter (NOTES v65). Where causal (every slice of the
    batch is), in groups of SPLIT_UNIFORM_MIN_GROUP heads and more whose longest one-head walk has
    SPLIT_UNIFORM_STEPS steps of at most SPLIT_UNIFORM_MAX_BLOCK_M rows, a split batch splits every
    item into the same, largest allowed number of pieces (NOTES v70; uniform=False: the model's
    counts, to measure), where that walk is longer into min(group / 2, SPLIT_UNIFORM_LONG_MAX_PIECES)
    pieces (v71; in groups over 32 heads up to a piece of four heads for each long_steps_per_piece
    steps of the walk: v72, 0 for v71's), and with lean_dram (a GPU with less than
    SPLIT_LEAN_DRAM_BYTES_PER_SM of DRAM bandwidth per SM) it splits so even where the model finds no
    split that pays (NOTES v69: fewer pieces for the shorter items read 0.78-0.86 at 2K there). With
    short_uniform (head dims from SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM), a causal split batch in groups of
    4 heads and more whose longest one-head walk is under pairs_steps[0] steps splits every item into
    short_max_pieces pieces (NOTES v79). With short_wide, in groups of SPLIT_SHORT_WIDE_MIN_GROUP heads
    and more whose longest one-head walk has SPLIT_SHORT_WIDE_MIN_STEPS up to pairs_steps[0] steps, an
    item has at most pairs_max_pieces pieces there (NOTES v80). The Java host's policy is the same
    (FusedBatchPlan.groupSplits; SchedulePolicyParityTest compares the two on print_cases' grid)."""
    if group < 2 or group > 64 or not costs:
        return None
    overhead = overhead_steps * block_m
    longest = max(costs)
    most = group  # the most pieces of one item
    if short_wide and group >= SPLIT_SHORT_WIDE_MIN_GROUP and \
            SPLIT_SHORT_WIDE_MIN_STEPS * block_m <= longest < pairs_steps[0] * block_m:
        most = min(group, pairs_max_pieces)
    elif group >= 4 and longest < pairs_steps[0] * block_m:
        most = min(group, short_max_pieces)
    elif group >= 4 and longest <= pairs_steps[1] * block_m:
        most = min(group // 2, pairs_max_pieces)

    def pieces(splits):
        out = []
        for c, n in zip(costs, splits):
            for j in range(n):
                h0, h1 = split_heads(j, n, group)
                out.extend([c * (h1 - h0) + overhead] * heads_kv)
        return out

    total = heads_kv * group * sum(costs)
    if group * max(costs) <= total / (4 * sms):  # longest-first is near even already
        return None
    best, best_splits = _lpt_makespan(pieces([1] * len(costs)), sms), None
    unsplit = best
    for kappa in kappas:
        bound = total / (kappa * sms)
        splits = [max(1, min(most, math.ceil(group * c / bound))) if bound > 0 else 1 for c in costs]
        if max(splits) == 1:
            continue
        t = _lpt_makespan(pieces(splits), sms)
        if t < best:
            best, best_splits = t, splits
    paid = best_splits is not None and best * (1 + step_cost) + fixed_items * overhead < unsplit
    if causal and group >= SPLIT_UNIFORM_MIN_GROUP and block_m <= SPLIT_UNIFORM_MAX_BLOCK_M:
        if SPLIT_UNIFORM_STEPS[0] * block_m <= longest < SPLIT_UNIFORM_STEPS[1] * block_m and \
                (uniform if paid else lean_dram):
            return [most] * len(costs)
        if longest >= SPLIT_UNIFORM_STEPS[1] * block_m and paid and uniform:
            n = SPLIT_UNIFORM_LONG_MAX_PIECES
            if long_steps_per_piece:  # 0: v71's pieces, to measure
                n = max(n, min(-(-group // 4), longest // (block_m * long_steps_per_piece)))
            return [min(group // 2, n)] * len(costs)
    if short_uniform and paid and causal and group >= 4 and longest < pairs_steps[0] * block_m:
        return [most] * len(costs)
    return best_splits if paid else None


# distca_attn.h section 11: the most band ends of a persistent kernel's parameter block
WORK_BANDS = 8
# work_bands' candidate cuts: band k holds the items of cost in (longest / f^(k+1), longest / f^k]
# (the last band everything cheaper), for each f (NOTES v73)
WORK_BANDS_FACTORS = (2.0, 1.5, 1.25)
# ... kept only where the modelled schedule ends at least this fraction sooner than without bands (the
# model sees no L2: bands of uniform short sequences, 16 of 1K tokens backward and 8 of 2K forward,
# modelled 1.2-1.4% sooner, ran 6% slower on an H100; NOTES v73)
WORK_BANDS_MIN_GAIN = 0.03
# ... and modelled only where the longest tile is at least this fraction of a CTA's share of the
# work (cheaper tiles cannot delay the end by more than that)
WORK_BANDS_MIN_LONGEST = 0.01
# ... and in the backward only from this head dim: head_dim 64's backward, whose dQ reduce-adds move
# twice d128's bytes per FLOP, lost up to 9% where a band's short tiles come from many documents
# (their rows read again in every band) and gained 0-5% on pretrain mixes (NOTES v73)
WORK_BANDS_BWD_MIN_HEAD_DIM = 128


# distca_attn.h section 13 (DISTCA_BWD_Q128_MIN_ROWS_FULL / _CAUSAL): the query rows under which a slice
# counts as short for the head_dim 64 backward's 128-row steps (distca_attn_bwd_ws_q128_*), without and
# with the causal mask (NOTES v81, v86, H200: non-causal 2K-16K +3-7%, 1.5K +2%, 1K -1%; causal 4K-16K +2-4%,
# 3K-3.5K +1%, 2.5K +-0, 2K -1.5%, 512-1K -9-11%, mixes of documents up to 1K-3K -5-13%).
BWD_Q128_MIN_ROWS_FULL = 1536
BWD_Q128_MIN_ROWS_CAUSAL = 3072
# DISTCA_BWD_Q128_SHORT_WORK_DIVISOR: the slices under their bound may hold at most 1 / this of the
# batch's work (NOTES v87, H200: documents drawn from the pretrain lengths, causal 0-4% faster,
# non-causal 4-6%; a mix of 3000/1100/700/300-token documents, all short, 5% slower causal)
BWD_Q128_SHORT_WORK_DIVISOR = 4


def bwd_q128(head_dim, slices, split):
    """Whether the backward of a batch runs in steps of 128 query rows: head_dim 64, no group splits
    (`split`: the work list has them), and the slices (q_len, kv_len, causal) with fewer query rows than
    BWD_Q128_MIN_ROWS_CAUSAL (causal) or BWD_Q128_MIN_ROWS_FULL (not) hold at most 1 /
    BWD_Q128_SHORT_WORK_DIVISOR of the batch's work, a slice's q_len * kv_len, half of it if causal
    (there must be work). FusedBatchPlan.q128Steps decides the same."""
    if head_dim != 64 or split:
        return False
    total = short = 0
    for q, k, c in slices:
        w = max(0, q) * max(0, k) * (1 if c else 2)  # (twice the work: integers)
        total += w
        if q < (BWD_Q128_MIN_ROWS_CAUSAL if c else BWD_Q128_MIN_ROWS_FULL):
            short += w
    return total > 0 and short * BWD_Q128_SHORT_WORK_DIVISOR <= total


def claim_makespan(costs, heads, head_group, ctas, band_end=()):
    """The last CTA's end when the persistent kernels' `ctas` CTAs claim their tiles in order, each
    as it frees (distca_attn.h sections 5, 7 and 11): the work list (item costs `costs`, in list
    order) cut into bands at the item indices `band_end`, each band walked once per group of
    `head_group` heads (of `heads`), a group's heads side by side, before the next band."""
    import heapq
    loads = [0.0] * max(1, ctas)
    lo = 0
    for hi in [e for e in band_end if 0 < e < len(costs)] + [len(costs)]:
        band = costs[lo:hi]
        for h0 in range(0, heads, head_group):
            g = min(head_group, heads - h0)
            for c in band:
                for _ in range(g):
                    heapq.heapreplace(loads, loads[0] + c)
        lo = hi
    return max(loads)


def band_cuts(costs, factor, most=WORK_BANDS, floor=0.0):
    """Band ends for a longest-first work list (item costs `costs`): a new band wherever the cost
    falls to 1 / factor of the previous band's bound, at most `most` ends, and none where the cost
    is under `floor` times the longest (those items all in the last band)."""
    ends = []
    if not costs or costs[0] <= 0:
        return ends
    bound = costs[0] / factor
    for i, c in enumerate(costs):
        if c > bound:
            continue
        if c < floor * costs[0]:
            break
        ends.append(i)  # i > 0: bound < costs[0]
        if len(ends) == most:
            break
        while c <= bound and bound > 0:
            bound /= factor
    return ends


def work_bands(costs, heads, head_group, ctas, factors=WORK_BANDS_FACTORS, min_gain=WORK_BANDS_MIN_GAIN,
               floor=0.0, most=WORK_BANDS):
    """distca_attn.h section 11: band ends for a persistent kernel's longest-first work list (item
    costs `costs`, one head's tile each, a tile change included), or [] where section 5's order
    ends as soon (within min_gain) as the best of band_cuts' candidates in claim_makespan's model.
    The Java host's policy is the same (WorkBands)."""
    if len(costs) < 2 or heads < 1 or ctas < 1:
        return []
    share = sum(costs) * heads / ctas
    if share <= 0 or max(costs) < WORK_BANDS_MIN_LONGEST * share:
        return []
    base = claim_makespan(costs, heads, head_group, ctas)
    best, best_ends = base * (1 - min_gain), []
    for f in factors:
        ends = band_cuts(costs, f, most=most, floor=floor)
        if ends:
            t = claim_makespan(costs, heads, head_group, ctas, ends)
            if t < best:
                best, best_ends = t, ends
    return best_ends


def pack_band_ends(ends):
    """band_end[DISTCA_WORK_BANDS] as the parameter blocks hold it (zeros after the last end)."""
    assert len(ends) <= WORK_BANDS
    return struct.pack(f"<{WORK_BANDS}i", *(list(ends) + [0] * (WORK_BANDS - len(ends))))


# The grid of batches that `--cases` prints (the Java host's SchedulePolicyParityTest runs the same
# policy on each and must give the same answers): documents repeated to CASE_TOKENS tokens, cut into
# key tiles of block_n rows (a key tile's cost: the query rows of its causal document that see it, or
# all of them where the batch is not causal).
CASE_TOKENS = 16384
CASE_MIXES = ((256,), (512,), (1024,), (2048,), (4096,), (16384,), (400, 200), (600, 400, 200),
              (1000, 700, 300, 200), (1500, 400), (2000, 1000, 500), (3000, 1100, 700, 300),
              (8000, 4000, 2000, 1000, 500), (5000, 700, 128))
CASE_GROUPS = (2, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64)
CASE_HEADS_KV = (1, 2, 4)


def case_docs(lengths, tokens=CASE_TOKENS):
    """`lengths` repeated while they fit in `tokens` tokens."""
    docs = []
    while sum(docs) + lengths[len(docs) % len(lengths)] <= tokens:
        docs.append(lengths[len(docs) % len(lengths)])
    return docs


def case_costs(lengths, block_n, causal, tokens=CASE_TOKENS):
    """Each key tile's cost (query rows for one head) of `lengths` repeated to `tokens` tokens."""
    return [(n - k if causal else n) for n in case_docs(lengths, tokens) for k in range(0, n, block_n)]


def cases():
    """(lengths, block_n, block_m, heads_kv, group, sms, lean_dram, causal, head_dim) of the grid."""
    for head_dim, block_n in ((64, 128), (128, 128), (256, 64)):
        for lengths in CASE_MIXES:
            for group in CASE_GROUPS:
                for heads_kv in CASE_HEADS_KV:
                    for causal in (True, False):
                        for lean_dram, sms in ((False, 132), (True, 132), (False, 78)):
                            yield lengths, block_n, 64, heads_kv, group, sms, lean_dram, causal, head_dim


def print_cases(out=sys.stdout):
    """One line per case: its inputs, group_splits' counts (as value*run, or '-' for None),
    l2_order_pieces' (both as the Kernels host calls them: short_uniform from the head dim) and, on the
    lean-DRAM variant's line, work_bands' ends for the unsplit backward's longest-first list (each key
    tile walking its group, a tile change of SPLIT_OVERHEAD_STEPS steps; head groups of 1 and 2), and
    whether bwd_q128 takes the batch's documents (1 or 0)."""
    for lengths, block_n, block_m, heads_kv, group, sms, lean_dram, causal, head_dim in cases():
        costs = case_costs(lengths, block_n, causal)
        splits = group_splits(costs, heads_kv, group, sms, block_m, lean_dram=lean_dram, causal=causal,
                              short_uniform=head_dim >= SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM)
        runs = []
        for n in splits or []:
            if runs and runs[-1][0] == n:
                runs[-1][1] += 1
            else:
                runs.append([n, 1])
        l2 = l2_order_pieces(costs, group, block_m, causal, head_dim, heads_kv=heads_kv)
        bands = ""
        if lean_dram:
            tiles = sorted((c * group + SPLIT_OVERHEAD_STEPS * block_m for c in costs), reverse=True)
            bands = " ; ".join(" ".join(str(e) for e in work_bands(tiles, heads_kv, g, sms)) for g in (1, 2))
        print(" ".join(str(x) for x in (head_dim, block_n, block_m, heads_kv, group, sms, int(lean_dram),
                                        int(causal))),
              "|", " ".join(str(n) for n in lengths),
              "|", " ".join(f"{n}*{r}" for n, r in runs) if splits is not None else "-",
              "|", l2, "|", bands,
              "|", int(bwd_q128(head_dim, [(n, n, causal) for n in case_docs(lengths)], splits is not None or l2 > 1)),
              file=out)


def q128_cases():
    """bwd_q128's own grid (SchedulePolicyParityTest): 4,000 batches of 1-6 slices drawn with a fixed
    seed, query rows around the bounds and beyond, kv_len = q_len + a prefix (shards), causal or not,
    head_dim 64 or 128, group splits or not: (head_dim, split, [(q_len, kv_len, causal)])."""
    import random
    rnd = random.Random(87)
    rows = (0, 1, 128, 500, 1000, 1535, 1536, 2000, 2500, 3071, 3072, 4000, 6000, 8192, 16384)
    prefixes = (0, 0, 0, 128, 1000, 4000)
    for _ in range(4000):
        head_dim = 64 if rnd.random() < 0.8 else 128
        split = rnd.random() < 0.1
        slices = []
        for _ in range(rnd.randint(1, 6)):
            q = rnd.choice(rows)
            slices.append((q, q + rnd.choice(prefixes), rnd.random() < 0.6))
        yield head_dim, split, slices


def print_q128_cases(out=sys.stdout):
    """One line per q128_cases batch: 'head_dim split | q kv causal, ... | decision (1 or 0)'."""
    for head_dim, split, slices in q128_cases():
        print(head_dim, int(split), "|", ", ".join(f"{q} {k} {int(c)}" for q, k, c in slices),
              "|", int(bwd_q128(head_dim, slices, split)), file=out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--cases"]:
        print_cases()
    elif sys.argv[1:] == ["--q128-cases"]:
        print_q128_cases()
    else:
        sys.exit("usage: python3 native/bench/schedule_policy.py --cases | --q128-cases")
