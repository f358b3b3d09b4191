/*
 * distca_attn.h: the C ABI between the fused varlen attention kernels (native/src/*.cu, built
 * into native/build/distca_attn.fatbin) and the host code that launches them (the JCuda backend
 * in attention-server, and native/bench/*.py).
 *
 * Everything the host needs is here: kernel symbol names, the by-value parameter block of each
 * kernel (fixed little-endian byte layout, offsets below), the descriptor arrays the host builds,
 * the work lists and their order, launch geometry, buffer layouts, and which buffers the host
 * must zero (none).
 *
 * ABI version 6 (DISTCA_ATTN_ABI_VERSION below; what changed with each version is noted where it applies).
 *
 * ---------------------------------------------------------------------------------------------
 * 1. Kernels (all extern "C", so the symbol names below are the exact names for
 *    cuModuleGetFunction). DT is "bf16" or "fp16" (the element type of Q, K, V, O, dO, dQ, dK,
 *    dV); HD is the head dimension: 64, 128 or 256 (no kernels for other head dimensions: the host
 *    falls back to another backend).
 *
 *    distca_attn_fwd_<DT>_d<HD>          (distca_fwd_params_t)  forward: O and LSE
 *    distca_attn_fwd_ws_<DT>_d<HD>       (distca_fwd_ws_params_t) the same forward, warp-specialized
 *                                                              with TMA loads (see 7); launch it
 *                                                              where fwd_ws_threads != 0
 *    distca_attn_bwd_pre_<DT>_d<HD>      (distca_bwd_params_t)  backward step 1: D = rowsum(dO*O),
 *                                                              and zero the fp32 dQ workspace
 *    distca_attn_bwd_<DT>_d<HD>          (distca_bwd_params_t)  backward step 2: dK, dV (written),
 *                                                              dQ (fp32 atomics into workspace)
 *    distca_attn_bwd_ws_<DT>_d<HD>       (distca_bwd_ws_params_t) step 2, warp-specialized with TMA
 *                                                              loads (see 7); where bwd_ws_threads != 0
 *    distca_attn_bwd_post_<DT>_d<HD>     (distca_bwd_params_t)  backward step 3: dQ = workspace *
 *                                                              scale, converted to DT
 *    distca_attn_bwd_ws_kv_<DT>_d<HD>    (distca_bwd_ws_params_t) step 2 with group splits, dK and dV
 *                                                              into a workspace (section 9; where
 *                                                              bwd_ws_threads != 0; look it up:
 *                                                              images before HD 256's have none)
 *    distca_attn_bwd_ws_chunked_<DT>_d<HD> (distca_bwd_ws_params_t) step 2 as bwd_ws, the GQA group
 *                                                              walked in chunks (section 10; HD 128
 *                                                              only: look it up)
 *    distca_attn_bwd_ws_q128_<DT>_d<HD>  (distca_bwd_ws_params_t) step 2 as bwd_ws in steps of 128
 *                                                              query rows (section 13; HD 64 only:
 *                                                              look it up)
 *    distca_attn_bwd_post_ws_<DT>_d<HD>  (distca_bwd_params_t)  step 3 after bwd_ws, bwd_ws_kv or
 *                                                              bwd_ws_chunked: their dQ workspace's
 *                                                              layout (section 12; ABI version 6)
 *
 *    Each kernel takes exactly ONE parameter: its parameter block, by value. With JCuda:
 *      cuLaunchKernel(fn, grid, 1, 1, threads, 1, 1, smemBytes, stream,
 *                     Pointer.to(Pointer.to(paramBlockBytes)), null)
 *    where paramBlockBytes is a byte[] of exactly the struct's size, little-endian.
 *    The three backward kernels take the same block; launch them in order on one stream. A host
 *    that already has D = rowsum(dO*O) (fp32, LSE layout, summed over HD from O as rounded to DT)
 *    may skip bwd_pre: it writes D into dsum and does the rest of bwd_pre's work itself, zeroing
 *    dq_claims (section 8) or, without it, dq_accum (the Java server does so with cuMemsetD32Async,
 *    since its clients send D instead of O); the other kernels never read O (pass 0).
 *
 * 2. Launch geometry. The tile sizes are read from the loaded module, not hard-coded: each head
 *    dimension has one __device__ global of type distca_attn_info_t, named
 *    "distca_attn_info_d<HD>" (cuModuleGetGlobal + cuMemcpyDtoH, 64 bytes). Because the fatbin
 *    holds several architectures (sm_80, sm_90a), the values may differ per GPU: read them after
 *    loading the module on the device in use.
 *      forward:   grid.x = num_work * heads_q, block.x = fwd_threads,
 *                 dynamic shared memory = fwd_smem_bytes
 *      forward (warp-specialized, where fwd_ws_threads != 0): persistent (section 7), so any
 *                 grid.x >= 1 is correct; launch min(num_work * heads_q, multiprocessor count)
 *                 CTAs with a tile counter; block.x = fwd_ws_threads, dynamic shared memory =
 *                 fwd_ws_smem_bytes
 *      bwd_pre:   grid.x = ceil(total_q * heads_q * HD / (elementwise_threads * 8)),
 *                 block.x = elementwise_threads, dynamic shared memory = 0
 *      bwd:       grid.x = num_work * heads_kv, block.x = bwd_threads,
 *                 dynamic shared memory = bwd_smem_bytes
 *      bwd (warp-specialized, where bwd_ws_threads != 0): persistent like the warp-specialized
 *                 forward: launch min(num_work * heads_kv, multiprocessor count) CTAs with a tile
 *                 counter; block.x = bwd_ws_threads, dynamic shared memory = bwd_ws_smem_bytes
 *      bwd_post:  like bwd_pre
 *    Once per function, before the first launch, call cuFuncSetAttribute(fn,
 *    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes) with its shared-memory size (required
 *    above 48 KiB, which most of them are; harmless otherwise).
 *    grid.y = grid.z = block.y = block.z = 1. grid.x must be <= 2^31 - 1. A zero-sized grid must
 *    not be launched (skip the launch instead).
 *
 * 3. Buffers (device pointers, all 16-byte aligned, contiguous, no padding):
 *    Q, O, dO, dQ    DT   [total_q, heads_q, HD]  fused query buffer: slices packed by row
 *    K, V, dK, dV    DT   [total_k, heads_kv, HD] fused key buffer: segments packed by row
 *    LSE             fp32 [heads_q, total_q]      natural log; slice s's row i of head h is
 *                                                 lse[h * total_q + s.q_start + i]
 *    dsum            fp32 [heads_q, total_q]      backward workspace (written by bwd_pre)
 *    dq_accum        fp32 [total_q, heads_q, HD]  backward workspace (zeroed by bwd_pre, or by
 *                                                 the warp-specialized step 2: section 8)
 *    dq_claims       int32 [heads_q, total_q]     backward workspace of section 8 (optional)
 *    heads_q % heads_kv == 0; query head h reads key/value head h / (heads_q / heads_kv).
 *    No buffer needs zeroing by the host. Forward writes O and LSE of every row of every slice
 *    (rows between slices, if any, are untouched). Backward writes dQ of all total_q rows (rows of
 *    no slice get 0) and dK, dV of every row of every segment (rows no slice reads get 0).
 *    Inputs must be finite.
 *
 * 4. Descriptors (device arrays of int32, built by the host):
 *    distca_slice_t[num_slices]      one per query slice (QuerySlice), 32 bytes each
 *    distca_segment_t[num_segments]  one per K/V segment (KvSegment), 16 bytes each (backward)
 *    int32 segment_slices[]          backward: for segment g, the indices of the slices whose
 *                                    segment is g are segment_slices[g.slice_begin ..
 *                                    g.slice_begin + g.slice_count)
 *    distca_work_t[num_work]         the work list, 8 bytes each (see 5)
 *
 *    Semantics (identical to attention-server's QuerySlice / KvSegment): slice s has query rows
 *    [q_start, q_start + q_len) of the fused Q buffer; they attend to key rows
 *    [k_start, k_start + kv_len) of the fused K/V buffers, where k_start = (fused row of its
 *    segment's first key) + QuerySlice.kvStart. With causal != 0, row i (0-based inside the slice)
 *    sees key j (0-based inside [k_start, k_start + kv_len)) iff j <= i + diagonal;
 *    bottom-right alignment is diagonal = kv_len - q_len. Without causal, row i sees all kv_len
 *    keys. A row that sees no key (kv_len == 0, or causal with i + diagonal < 0) gets O = 0 and
 *    LSE = -inf, and contributes nothing to dK, dV; its dQ is 0.
 *    q_len >= 0 and kv_len >= 0; a slice's key range lies inside its segment.
 *
 * 5. Work lists (built by the host, any order is correct; order only changes speed):
 *    Forward: one distca_work_t {slice, block} per query tile: for every slice s with q_len > 0,
 *      blocks 0 .. ceil(q_len / fwd_block_m) - 1 (block b covers slice rows
 *      [b * fwd_block_m, min(q_len, (b + 1) * fwd_block_m)) ). The CTAs walk the work list
 *      once per pair of query heads, the two heads of a tile side by side: CTA x handles work
 *      item (x - 2 * P * num_work) / 2 for query head 2 * P + x % 2, P = x / (2 * num_work)
 *      (a last, odd head alone). Keys read by the query tiles of one head then stay in L2.
 *      Recommended order: most expensive first ("longest tiles first"), cost = number of key
 *      blocks the tile visits = ceil(n_end / fwd_block_n) where n_end = kv_len without causal,
 *      clamp(last_row_of_tile + diagonal + 1, 0, kv_len) with causal.
 *    Backward: one distca_work_t {segment, block} per key tile: for EVERY segment g with len > 0,
 *      blocks 0 .. ceil(len / bwd_block_n) - 1 (block b covers segment rows
 *      [b * bwd_block_n, min(len, (b + 1) * bwd_block_n)) ), including segments and blocks that
 *      no slice reads (their dK, dV are written as zero). CTA x handles work item x % num_work
 *      for key/value head x / num_work (the list walked once per head: the CTAs resident at one
 *      time work on one head, whose query rows stay in L2 while its key tiles read them). It
 *      loops over every slice of the segment, every query head of the GQA group and every query
 *      tile of the slice that sees the key tile, so dK and dV are summed in registers and
 *      written once (no atomics); dQ goes through fp32 atomics.
 *      Recommended order: most expensive first, cost = sum over the segment's slices of the
 *      number of query rows that see any key of the block.
 *    Each (work item, head) pair must appear exactly once (duplicates would race on outputs).
 *
 * 6. Parameter blocks: byte offsets are fixed (static_asserts below); pointers are 64-bit device
 *    addresses (CUdeviceptr), int32/float are 4 bytes, little-endian. Unused pointers may be 0.
 *
 * 7. The warp-specialized forward (distca_attn_fwd_ws_<DT>_d<HD>, head_dim 64 and 128 in the sm_90a
 *    image, and 256 since ABI version 3) computes what distca_attn_fwd_<DT>_d<HD> computes, from the same buffers,
 *    descriptors and work list (its tiles are fwd_block_m rows, the backward's bwd_block_n keys;
 *    at head_dim 256 its key blocks are 80 rows against the other kernel's 64, so the two round
 *    differently); a
 *    producer warpgroup loads Q, K and V through the Tensor Memory Accelerator (and stores O
 *    through it where that pays). Its parameter block, distca_fwd_ws_params_t (640 bytes; 512
 *    before ABI version 2), is distca_fwd_params_t at offset 0, the tile counter at 80, zeros up
 *    to offset 128, then four CUtensorMap of 128 bytes: Q at 128, K at 256, V at 384, O at 512
 *    (O's map is Q's at O's address: O has Q's shape). The kernel is persistent: CTA b runs tile b (tile t = the t-th (work item,
 *    head) pair as in section 5), then, where tile_counter is the device address of an int32 that
 *    is 0 at launch (cuMemsetD32Async on the launch's stream), tile grid.x + atomicAdd(counter, 1),
 *    and so on until past the last: the longest-first order of the work list holds across the
 *    CTAs. Where tile_counter is 0, CTA b runs tiles b, b + grid.x, ... (a static split that
 *    balances causal work badly: launch one CTA per tile then). Each tensor map is encoded
 *    by the host with cuTensorMapEncodeTiled from the tensor's device address and:
 *      data type   CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 (9) or _FLOAT16 (6), as DT
 *      rank 3      globalDim {HD, heads, rows}: heads_q and total_q for Q and O, heads_kv and
 *                  total_k for K and V (rows >= 1)
 *      globalStrides {HD * 2, heads * HD * 2} bytes; boxDim {64, 1, 128} ({64, 1, 80} for the
 *                  forward's K and V at head_dim 256, whose key blocks are 80 rows: ABI version 4;
 *                  64 rows in version 3);
 *                  elementStrides {1, 1, 1}
 *      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
 *      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE
 *    Rows past total_q/total_k read as zero; key rows of other segments inside a block are masked.
 *    The warp-specialized backward (distca_attn_bwd_ws_<DT>_d<HD>) replaces step 2 only (bwd_pre and
 *    bwd_post stay) and is persistent in the same way over its tiles (tile t = the t-th (work
 *    item, head_kv) pair): distca_bwd_ws_params_t (896 bytes) is distca_bwd_params_t at 0, its tile
 *    counter (as the forward's) at 152, zeros up to 256, then the tensor maps of Q at 256, K at
 *    384, V at 512, dO at 640 and the dQ workspace at
 *    768, encoded as above except that the boxes of Q and dO are {64, 1, 64} (the backward's
 *    query tile is 64 rows) and the dQ workspace's map is CU_TENSOR_MAP_DATA_TYPE_FLOAT32 (7):
 *    globalDim {HD, heads_q, total_q}, globalStrides {HD * 4, heads_q * HD * 4}, boxDim
 *    {32, 1, 64} (the 128-byte swizzle spans 32 fp32 columns). The kernel adds dQ into the
 *    workspace through it (TMA reduce-add) instead of atomics. At head_dim 256 (in the sm_90a
 *    image since the kernels' v51; the host side is unchanged) the kernel's key tiles are
 *    bwd_block_n = 64 rows and it loads K and V without their maps, which must still be valid.
 *
 * 8. The dQ workspace zeroed where it is first used (the warp-specialized backward only). Where
 *    distca_bwd_params_t.dq_claims is the device address of an int32 [heads_q, total_q] workspace
 *    (any contents at launch), bwd_pre does not zero dq_accum (which may then hold anything) but
 *    sets every word of dq_claims to 0; the first CTA of distca_attn_bwd_ws_* to visit a query tile
 *    of a query head (counted in the word of the tile's first row) zeroes that tile's workspace rows
 *    and marks them (bit 31 of their words) before any reduce-add into them, and bwd_post writes dQ
 *    = 0 for the rows left unmarked (no key tile visits their query tile) instead of converting
 *    their workspace. That saves the zero-fill's pass over the workspace (4 of the 14 bytes per dQ
 *    element that bwd_pre and bwd_post move) and the reduce-adds' DRAM reads of the zeroes. With
 *    dq_claims = 0 the three kernels behave as before. distca_attn_bwd_* (not warp-specialized)
 *    does not zero: launch it with dq_claims = 0 only.
 *
 * 9. Group splits (ABI version 5). A key tile walks every query head of its GQA group (section 5),
 *    so with few K/V heads there are few work items, and under a causal mask the first key tiles of
 *    a long segment are the longest by far: one K/V head for 8 query heads over a 16K-token
 *    sequence gives 128 key tiles for 132 SMs, the longest twice the mean, and the backward ran at
 *    half its MHA speed. distca_attn_bwd_ws_kv_<DT>_d<HD> (sm_90a; HD 256 added within ABI version 6,
 *    a kernel to look up) is step 2 of the warp-specialized backward for a work list in which a key
 *    tile may appear as several items,
 *    each walking a range of the group's query heads: the block word (distca_work_t.block) is
 *        key block | first << DISTCA_WORK_HEAD_SHIFT | count << DISTCA_WORK_HEADS_SHIFT
 *    for the query heads [first, first + count) of the group (count 0: the whole group; the
 *    ranges of one key tile's items partition the group; key blocks < 2^20, groups of at most 64
 *    heads). Its items' partial dK and dV meet in an fp32 workspace, distca_bwd_ws_params_t.dkv_accum
 *    = the device address of fp32 [2][total_k, heads_kv, HD] (dK's sums at 0, dV's at total_k *
 *    heads_kv * HD floats): every item adds its dK (not yet times the softmax scale) and dV into it
 *    (bulk reduce-adds) and writes neither dK nor dV. The host zeroes the workspace before the
 *    kernel (cuMemsetD32Async) and converts it after bwd_post with bwd_post twice more, with the
 *    same kind of block but dq_accum = the workspace's dK (then dV) half, dq = dK (then dV),
 *    total_q = total_k, heads_q = heads_kv, dq_claims = 0 and scale = the softmax scale (then 1).
 *    Summation order then varies from run to run (as dQ's does). The other kernels take no such
 *    work list; distca_attn_bwd_ws_* ignores dkv_accum.
 *
 * 10. The chunked walk (added within ABI version 5: a kernel to look up, nothing else changes). A
 *    backward key tile walks its GQA group's query heads one after the other, each over all of the
 *    query tiles that see it. Under a causal mask key tile j of a segment has fewer of those than
 *    key tile j - 1, so the key tiles running side by side drift apart head by head, and at large
 *    groups the Q/dO tiles and dQ rows that one reads and adds into have left the L2 by the time
 *    its neighbour comes to them (16 query heads on 2 K/V heads at 16K: L2 hit rate 66% against
 *    96% with MHA, and 0.91 of MHA's speed). distca_attn_bwd_ws_chunked_<DT>_d<HD> (HD 128, sm_90a)
 *    is distca_attn_bwd_ws_<DT>_d<HD> walking chunks of a few query tiles, each for every head of
 *    the group before the next chunk. Same parameters, launch and results (up to summation
 *    order); launch it instead of bwd_ws where heads_q >= DISTCA_BWD_CHUNK_MIN_GROUP * heads_kv
 *    and the work list has no group splits (those take bwd_ws_kv). Below that group size the
 *    walks stay close enough and the chunks' walk state costs 1-2%. The chunked kernel walks its
 *    work list once per pair of K/V heads, the two heads of a key tile side by side, as the
 *    forward pairs its query heads (section 5: CTA x handles work item (x - 2 * P * num_work) / 2
 *    for K/V head 2 * P + x % 2, P = x / (2 * num_work); a last, odd head alone). The head_dim 256
 *    backward (distca_attn_bwd_ws_*_d256) walks in chunks at every group size, at no cost to MHA,
 *    with its K/V heads one after the other.
 *
 * 11. The work list in bands (added within ABI version 5: parameters that were zero padding).
 *    Walking the list once per head (or pair of heads, section 5) keeps a head's tiles side by side
 *    in L2, but the last heads' most expensive tiles are then claimed late: where a few tiles are
 *    far longer than the rest (a varlen batch whose longest document has several times the next
 *    one's tokens), the kernel's end waits for them (a head-by-head list schedule of a 16K-token
 *    batch of 4-7 documents ends 1-8% (forward) and 6-13% (backward, MHA) after an even share,
 *    17-56% for GQA backwards, whose work items walk every head of their group). band_end in
 *    distca_fwd_ws_params_t and distca_bwd_ws_params_t cuts the work list into bands: with
 *    0 < band_end[0] < band_end[1] < ... < band_end[k - 1] < num_work (the first entry outside
 *    that range, such as 0, ends the list; at most DISTCA_WORK_BANDS entries), the bands are items
 *    [0, band_end[0]), [band_end[0], band_end[1]), ..., [band_end[k - 1], num_work), and the
 *    persistent kernels walk each band for every head (in section 5's head order, as if the band
 *    were the whole list) before the next band: the tiles of band b follow those of bands 0 .. b-1.
 *    All zeros is section 5's order; any bands compute the same results (the work list stays
 *    longest first, so each band is a range of similar costs: the long tiles of every head are
 *    claimed first, each band's tiles of one head still side by side). Kernels other than the
 *    persistent ones (distca_attn_fwd_*, distca_attn_bwd_*) take no bands.
 *
 * 12. The warp-specialized backward's dQ workspace (ABI version 6). distca_attn_bwd_ws_*,
 *    distca_attn_bwd_ws_kv_* and distca_attn_bwd_ws_chunked_* add dQ into dq_accum with each group
 *    of 8 columns (HD 128 and 256; at 64 in order) in the order 0, 2, 4, 6, 1, 3, 5, 7: the order
 *    in which their consumers stage their fp32 accumulators with stmatrix, one shared-memory
 *    wavefront for each 8x8 matrix. Convert it with distca_attn_bwd_post_ws_<DT>_d<HD> (same
 *    parameters and launch as bwd_post; at HD 64 the same conversion); bwd_post reads the other
 *    kernels' workspace, in order (distca_attn_bwd_*), and section 9's dK/dV sums. A host of
 *    version 5 that launches bwd_post after bwd_ws gets dQ with its columns permuted: version 6
 *    images must not be driven by it.
 *
 * 13. Steps of 128 query rows (added within ABI version 6: a kernel to look up, nothing else
 *    changes). distca_attn_bwd_ws_q128_<DT>_d64 (sm_90a) is distca_attn_bwd_ws_<DT>_d64 whose key
 *    tiles walk query tiles of 128 rows instead of 64 (bwd_block_m stays the plain kernel's 64):
 *    same parameters (the same tensor maps, boxes of 64 query rows), launch (bwd_ws_threads,
 *    bwd_ws_smem_bytes, which covers both) and results up to summation order; its dQ workspace is
 *    bwd_ws's (convert it with bwd_post_ws). It takes no group splits (those take bwd_ws_kv). Per
 *    step it shares the fixed costs of a step (the stage hand-over, the dQ tile's staging and
 *    reduce-adds, phase C's dQ^T = K^T dS^T as one m64n128 GEMM) between twice the query rows,
 *    and it walks half as many steps, which costs where the walks are short. A query slice is long
 *    with at least DISTCA_BWD_Q128_MIN_ROWS_FULL rows (no causal mask) or
 *    DISTCA_BWD_Q128_MIN_ROWS_CAUSAL rows (causal): on an H200 uniform batches of such slices ran
 *    2-7% faster (non-causal from 1.5K tokens, causal from 3K), shorter ones 1-11% slower (non-causal
 *    1K, causal 512-2K). Hosts launch it for a batch without group splits whose slices under their
 *    bound hold at most 1 / DISTCA_BWD_Q128_SHORT_WORK_DIVISOR of its work (a slice's q_len x kv_len,
 *    half of it under a causal mask; there must be work): on documents drawn from the pretrain
 *    lengths, 0-4% faster causal and 4-6% non-causal (native/NOTES.md v81, v86, v87).
 */
#ifndef DISTCA_ATTN_H_
#define DISTCA_ATTN_H_

#include <stdint.h>

#define DISTCA_ATTN_ABI_VERSION 6

#ifdef __cplusplus
extern "C" {
#endif

/* One query slice (QuerySlice). 32 bytes, 4-byte aligned. */
typedef struct distca_slice_t {
  int32_t q_start;  /*  0: first row in the fused Q/O/dO/dQ buffers; also its LSE column */
  int32_t q_len;    /*  4: query rows, >= 0 */
  int32_t k_start;  /*  8: first key row in the fused K/V buffers (segment row + kvStart) */
  int32_t kv_len;   /* 12: keys it attends to, >= 0 */
  int32_t causal;   /* 16: 0 = full, 1 = causal with the diagonal below */
  int32_t diagonal; /* 20: row i sees key j iff j <= i + diagonal (causal only) */
  int32_t segment;  /* 24: index of its K/V segment (informational for the kernels) */
  int32_t reserved; /* 28: must be 0 */
} distca_slice_t;

/* One K/V segment (KvSegment), backward only. 16 bytes. */
typedef struct distca_segment_t {
  int32_t k_start;     /*  0: first row in the fused K/V/dK/dV buffers */
  int32_t len;         /*  4: rows */
  int32_t slice_begin; /*  8: offset of its slice list in segment_slices[] */
  int32_t slice_count; /* 12: number of slices that read it (0 allowed) */
} distca_segment_t;

/* One work item. 8 bytes. Forward: {slice index, query block}; backward: {segment index, block
 * word}: the key block, and for distca_attn_bwd_ws_kv_* the query heads of the group the item walks
 * (section 9; 0 above the key block: the whole group). */
typedef struct distca_work_t {
  int32_t item;  /* 0 */
  int32_t block; /* 4 */
} distca_work_t;

/* The backward's block word (section 9): bits 0-19 the key block, 20-25 the first query head of
 * the group that the item walks, 26-31 how many (0: the whole group). */
#define DISTCA_WORK_BLOCK_MASK 0xFFFFF
#define DISTCA_WORK_HEAD_SHIFT 20
#define DISTCA_WORK_HEAD_MASK 0x3F
#define DISTCA_WORK_HEADS_SHIFT 26

/* Section 13: the query rows under which a slice counts as short for distca_attn_bwd_ws_q128_*, by mask. */
#define DISTCA_BWD_Q128_MIN_ROWS_FULL 1536
#define DISTCA_BWD_Q128_MIN_ROWS_CAUSAL 3072
/* Section 13: the slices under those bounds may hold at most 1 / this of a batch's work. */
#define DISTCA_BWD_Q128_SHORT_WORK_DIVISOR 4

/* Section 10: the smallest GQA group (heads_q / heads_kv) for distca_attn_bwd_ws_chunked_*. */
#define DISTCA_BWD_CHUNK_MIN_GROUP 5

/* Section 11: the most band ends a persistent kernel's parameter block holds. */
#define DISTCA_WORK_BANDS 8

/* Parameter block of distca_attn_fwd_*. 80 bytes, 8-byte aligned. */
typedef struct distca_fwd_params_t {
  uint64_t q;        /*  0: DT   [total_q, heads_q, HD] */
  uint64_t k;        /*  8: DT   [total_k, heads_kv, HD] */
  uint64_t v;        /* 16: DT   [total_k, heads_kv, HD] */
  uint64_t o;        /* 24: DT   [total_q, heads_q, HD], output */
  uint64_t lse;      /* 32: fp32 [heads_q, total_q], output */
  uint64_t slices;   /* 40: distca_slice_t[num_slices] */
  uint64_t work;     /* 48: distca_work_t[num_work] */
  int32_t total_q;   /* 56: rows of the fused Q buffer (the LSE row stride) */
  int32_t total_k;   /* 60: rows of the fused K buffer */
  int32_t heads_q;   /* 64 */
  int32_t heads_kv;  /* 68 */
  int32_t num_work;  /* 72 */
  float scale;       /* 76: softmax scale, usually 1/sqrt(HD) */
} distca_fwd_params_t;

/* Parameter block of distca_attn_bwd_pre_*, distca_attn_bwd_*, distca_attn_bwd_post_*.
 * 152 bytes, 8-byte aligned. (Offset 144 held two int32 that had to be 0 until dq_claims: a host
 * that writes zeros there gets the behaviour it had.) */
typedef struct distca_bwd_params_t {
  uint64_t q;              /*   0: DT   [total_q, heads_q, HD] */
  uint64_t k;              /*   8: DT   [total_k, heads_kv, HD] */
  uint64_t v;              /*  16: DT   [total_k, heads_kv, HD] */
  uint64_t o;              /*  24: DT   [total_q, heads_q, HD] (forward output) */
  uint64_t dout;           /*  32: DT   [total_q, heads_q, HD] */
  uint64_t lse;            /*  40: fp32 [heads_q, total_q] (forward output) */
  uint64_t dsum;           /*  48: fp32 [heads_q, total_q] workspace */
  uint64_t dq_accum;       /*  56: fp32 [total_q, heads_q, HD] workspace */
  uint64_t dq;             /*  64: DT   [total_q, heads_q, HD], output */
  uint64_t dk;             /*  72: DT   [total_k, heads_kv, HD], output */
  uint64_t dv;             /*  80: DT   [total_k, heads_kv, HD], output */
  uint64_t slices;         /*  88: distca_slice_t[num_slices] */
  uint64_t segments;       /*  96: distca_segment_t[num_segments] */
  uint64_t segment_slices; /* 104: int32[] */
  uint64_t work;           /* 112: distca_work_t[num_work] (key tiles) */
  int32_t total_q;         /* 120 */
  int32_t total_k;         /* 124 */
  int32_t heads_q;         /* 128 */
  int32_t heads_kv;        /* 132 */
  int32_t num_work;        /* 136 */
  float scale;             /* 140: softmax scale */
  uint64_t dq_claims;      /* 144: int32 [heads_q, total_q] workspace, or 0 (section 8) */
} distca_bwd_params_t;

/* Launch geometry of one head dimension, readable from the module as the __device__ global
 * "distca_attn_info_d<HD>". 16 int32 = 64 bytes. */
typedef struct distca_attn_info_t {
  int32_t abi_version;         /*  0: DISTCA_ATTN_ABI_VERSION */
  int32_t head_dim;            /*  4 */
  int32_t fwd_block_m;         /*  8: query rows per forward work item */
  int32_t fwd_block_n;         /* 12: key rows per forward inner step (for cost estimates) */
  int32_t fwd_threads;         /* 16 */
  int32_t fwd_smem_bytes;      /* 20 */
  int32_t bwd_block_m;         /* 24: query rows per backward inner step (for cost estimates): the
                                  * warp-specialized backward's where the image has it, else
                                  * distca_attn_bwd_*'s (they differ at head_dim 64: 64 and 128; the
                                  * sm_90a image said 128 there before NOTES v80) */
  int32_t bwd_block_n;         /* 28: key rows per backward work item */
  int32_t bwd_threads;         /* 32 */
  int32_t bwd_smem_bytes;      /* 36 */
  int32_t elementwise_threads; /* 40: block size of bwd_pre and bwd_post */
  int32_t elementwise_vec;     /* 44: elements per thread of bwd_pre and bwd_post (8) */
  int32_t fwd_ws_threads;      /* 48: block size of distca_attn_fwd_ws_*; 0: not in this image */
  int32_t fwd_ws_smem_bytes;   /* 52: its dynamic shared memory */
  int32_t bwd_ws_threads;      /* 56: block size of distca_attn_bwd_ws_*; 0: not in this image */
  int32_t bwd_ws_smem_bytes;   /* 60: its dynamic shared memory */
} distca_attn_info_t;

/* Parameter block of distca_attn_fwd_ws_* (section 7). 640 bytes, 64-byte aligned. */
#if defined(__cplusplus)
#define DISTCA_ALIGN64 alignas(64)
#elif __STDC_VERSION__ >= 201112L
#define DISTCA_ALIGN64 _Alignas(64)
#else
#define DISTCA_ALIGN64
#endif
typedef struct distca_fwd_ws_params_t {
  DISTCA_ALIGN64 distca_fwd_params_t base; /*   0 */
  uint64_t tile_counter;                   /*  80: int32 device word, 0 at launch; or 0 (section 7) */
  int32_t band_end[DISTCA_WORK_BANDS];     /*  88: the work list's bands (section 11), or 0 */
  uint8_t pad[8];                          /* 120: 0 */
  uint64_t tmap_q[16];                     /* 128: CUtensorMap of Q */
  uint64_t tmap_k[16];                     /* 256: CUtensorMap of K */
  uint64_t tmap_v[16];                     /* 384: CUtensorMap of V */
  uint64_t tmap_o[16];                     /* 512: CUtensorMap of O (as Q's, at O's address) */
} distca_fwd_ws_params_t;

/* Parameter block of distca_attn_bwd_ws_* (section 7). 896 bytes, 64-byte aligned. */
typedef struct distca_bwd_ws_params_t {
  DISTCA_ALIGN64 distca_bwd_params_t base; /*   0 */
  uint64_t tile_counter;                   /* 152: as in distca_fwd_ws_params_t (section 7) */
  uint64_t dkv_accum;                      /* 160: fp32 [2][total_k, heads_kv, HD] workspace, or 0 (section 9) */
  int32_t band_end[DISTCA_WORK_BANDS];     /* 168: the work list's bands (section 11), or 0 */
  uint8_t pad[56];                         /* 200: 0 */
  uint64_t tmap_q[16];                     /* 256: CUtensorMap of Q (boxes of 64 rows) */
  uint64_t tmap_k[16];                     /* 384: CUtensorMap of K (boxes of 128 rows) */
  uint64_t tmap_v[16];                     /* 512: CUtensorMap of V (boxes of 128 rows) */
  uint64_t tmap_do[16];                    /* 640: CUtensorMap of dO (boxes of 64 rows) */
  uint64_t tmap_dq_accum[16];              /* 768: CUtensorMap of the fp32 dQ workspace */
} distca_bwd_ws_params_t;

#ifdef __cplusplus
}  /* extern "C" */

#include <cstddef>
static_assert(sizeof(distca_slice_t) == 32, "distca_slice_t layout");
static_assert(sizeof(distca_segment_t) == 16, "distca_segment_t layout");
static_assert(sizeof(distca_work_t) == 8, "distca_work_t layout");
static_assert(sizeof(distca_attn_info_t) == 64, "distca_attn_info_t layout");
static_assert(sizeof(distca_fwd_params_t) == 80, "distca_fwd_params_t size");
static_assert(offsetof(distca_fwd_params_t, work) == 48, "fwd.work");
static_assert(offsetof(distca_fwd_params_t, total_q) == 56, "fwd.total_q");
static_assert(offsetof(distca_fwd_params_t, scale) == 76, "fwd.scale");
static_assert(sizeof(distca_fwd_ws_params_t) == 640 && alignof(distca_fwd_ws_params_t) == 64,
              "distca_fwd_ws_params_t layout");
static_assert(offsetof(distca_fwd_ws_params_t, tile_counter) == 80, "fwd_ws.tile_counter");
static_assert(offsetof(distca_fwd_ws_params_t, tmap_q) == 128, "fwd_ws.tmap_q");
static_assert(offsetof(distca_fwd_ws_params_t, tmap_v) == 384, "fwd_ws.tmap_v");
static_assert(offsetof(distca_fwd_ws_params_t, tmap_o) == 512, "fwd_ws.tmap_o");
static_assert(offsetof(distca_bwd_ws_params_t, tile_counter) == 152, "bwd_ws.tile_counter");
static_assert(offsetof(distca_bwd_ws_params_t, dkv_accum) == 160, "bwd_ws.dkv_accum");
static_assert(offsetof(distca_fwd_ws_params_t, band_end) == 88, "fwd_ws.band_end");
static_assert(offsetof(distca_bwd_ws_params_t, band_end) == 168, "bwd_ws.band_end");
static_assert(sizeof(distca_bwd_ws_params_t) == 896 && offsetof(distca_bwd_ws_params_t, tmap_q) == 256 &&
                  offsetof(distca_bwd_ws_params_t, tmap_do) == 640 && offsetof(distca_bwd_ws_params_t, tmap_dq_accum) == 768,
              "distca_bwd_ws_params_t layout");
static_assert(sizeof(distca_bwd_params_t) == 152, "distca_bwd_params_t size");
static_assert(offsetof(distca_bwd_params_t, work) == 112, "bwd.work");
static_assert(offsetof(distca_bwd_params_t, total_q) == 120, "bwd.total_q");
static_assert(offsetof(distca_bwd_params_t, scale) == 140, "bwd.scale");
static_assert(offsetof(distca_bwd_params_t, dq_claims) == 144, "bwd.dq_claims");
#endif

#endif /* DISTCA_ATTN_H_ */
