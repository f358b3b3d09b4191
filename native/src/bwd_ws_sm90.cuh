// Backward on Hopper with warp specialization (head_dim 64 and 128, sm_90a): the work decomposition and
// the per-tile arithmetic (bwd_step) of bwd_sm90.cuh, with the loads moved to a producer warp:
//
//   warp 0           loads each key tile's V (once the consumers are past phase A of the previous
//                    tile's last step) and K (once they are done with it) through TMA, then walks the
//                    same query tiles as the consumers and, per tile, prefetches its Q and dO into L2
//                    and loads its LSE/D into registers, waits for a stage to be empty, loads Q and
//                    dO through TMA (two 64-column halves each) and stores LSE/D, and arrives on the
//                    stage's full barrier
//   warps 1, 2       with dq_claims (distca_attn.h section 8): walk the same query tiles and, per
//                    tile of stage 0 (warp 1) or 1 (warp 2), zero its dQ workspace rows if this is
//                    the tile's first visit (or wait until they are zero), then arrive on the
//                    stage's full barrier too, or (head_dim 64, NOTES v60) on a barrier that only
//                    the dQ thread waits for
//   warp 3, lane 0  the dQ thread: issues the TMA reduce-add of each consumer warpgroup's staged dQ
//                    tile, in step order, and frees the tile's buffer once it has been read (NOTES v52)
//   warpgroups 1, 2  keys [0, 64) and [64, 128) of the key tile: wait for a stage, bwd_step, release it;
//                    at head_dim 64 warpgroup 2 starts a key tile's first step once warpgroup 1 is
//                    past its phase A (NOTES v45)
//
// Persistent, like the forward (fwd_ws_sm90.cuh): one CTA per SM; the producer warp takes key tiles
// from the tile counter (work-list order) and passes each one's number to the consumers in a
// shared-memory slot, with its records and first query tile as the producer found them (tile_slot,
// bar_tile); they take those before the previous tile's dK/dV stores (NOTES v16). K and V have one
// buffer: the next tile's V loads under the last step's phases B and C, its K under the consumers'
// dK/dV stores, while the Q/dO stage ring runs on across tiles, so the next tile's first query
// tiles are already loaded.
// native/bench/trace.py times the consumers' steps and key-tile changes in a build with
// -DDISTCA_TRACE_PROBES (trace.cuh; NOTES v15).
//
// dQ leaves through TMA reduce-adds (cp.reduce.async.bulk.tensor ... add) from shared memory into
// the fp32 workspace instead of per-element atomics from the consumers (which cost ~30% of the
// kernel: NOTES.md v9): the consumers stage it and the dQ thread issues them, so that no consumer
// thread waits while the bulk copy unit takes the commands (v51, v52). Tensor maps
// (distca_bwd_ws_params_t, distca_attn.h section 7): K and V with boxes of 128 rows, Q and dO with
// boxes of 64 rows (the query tile; two a tile for the 128-row steps of distca_attn_bwd_ws_q128_*,
// distca_attn.h section 13), the dQ workspace (fp32) with boxes of 32 columns x 64 rows.
#pragma once
// The head dims up to which the backward's consumer warpgroups share no barrier in a step (NOTES
// v22): at head_dim 64 each computes dQ over its own 64 keys from its own rows of dS^T, so a
// warpgroup barrier is enough; at 128 each reads the other's rows in phase C.
#ifndef DISTCA_BWD_DECOUPLED_MAX_D
#define DISTCA_BWD_DECOUPLED_MAX_D 64
#endif
// The head dims up to which (decoupled ones only) consumer warpgroup 1 starts each key tile's first
// step once warpgroup 0 is past its phase A, so that the two run about a phase apart through the
// tile (NOTES v45): 64.
#ifndef DISTCA_BWD_STAGGER_MAX_D
#define DISTCA_BWD_STAGGER_MAX_D 64
#endif
// Whether the non-decoupled consumers (head_dim 128) hand dS^T over on two named barriers around its
// writes and phase C (ds_free_wait / ds_free_arrive) instead of a barrier of both warpgroups at each
// step's start (ncu: 2.7% of the consumers' stall samples there; NOTES v96: +0.3-2.6%).
#ifndef DISTCA_BWD_DS_SPLIT_SYNC
#define DISTCA_BWD_DS_SPLIT_SYNC 1
#endif
// Whether the consumers' dQ reduce-adds are issued by a thread of the producer warpgroup's warp 3
// (the dQ thread) instead of an elected consumer thread per warpgroup (NOTES v52).
#ifndef DISTCA_BWD_DQ_THREAD
#define DISTCA_BWD_DQ_THREAD 1
#endif
// Whether (with the dQ thread) a consumer warpgroup announces its staged dQ tile to the dQ thread
// only after the next step's phase A (or at the key tile's end) instead of right after its stores,
// with the proxy fence in the dQ thread after its wait instead of in every consumer thread (NOTES
// v77): the fence waited for the stores to drain from a busy shared memory on the consumers' path
// (H100, head_dim 128: +4% from 4K for the fence's move alone, about a point more with the late
// announcement; +2% at 2K).
#ifndef DISTCA_BWD_DQ_LATE_ANNOUNCE
#define DISTCA_BWD_DQ_LATE_ANNOUNCE 1
#endif
// The head dims up to which (with the late announcement) the consumers release a step's stage
// before their dQ stores instead of after them (NOTES v77): 64 (+1.5-5%; at 128 it gave back the
// late announcement's gain on the long shapes).
#ifndef DISTCA_BWD_EARLY_EMPTY_MAX_D
#define DISTCA_BWD_EARLY_EMPTY_MAX_D 64
#endif
// The head dims up to which (with the dQ thread) the claiming warps of section 8 release their
// claims to the dQ thread instead of the stage's full barrier, which the consumers wait for (NOTES
// v60, v78): 128. At 128 it read 0.988-0.990 on the long shapes until the dQ staging's stmatrix
// (v78); since then 0.997-1.006 there and +2-4.6% on short documents (causal 512-1K, GQA 16/2 at 1K).
#ifndef DISTCA_BWD_CLAIMS_OFF_PATH_MAX_D
#define DISTCA_BWD_CLAIMS_OFF_PATH_MAX_D 128
#endif
// The head dim at which the producer of the plain backward (neither group splits nor the chunked
// walk) prefetches each step's Q and dO into L2 (TMA prefetch) before it waits for the step's stage
// (NOTES v15): 128. Nowhere else (NOTES v66: without it the d64 and d256 backwards +1-2.7%, the d128
// GQA kernels +1.5-2.5% at 1K-2K and 0.993-0.997 from 8K on an H100, about half of that on an H200;
// the plain d128 kernel the same but non-causal 512, 0.986-0.997; issued only while the stage is
// still busy, the same as always).
#ifndef DISTCA_BWD_QDO_PREFETCH_D
#define DISTCA_BWD_QDO_PREFETCH_D 128
#endif
// Whether, in the chunked kernel (section 10), the claiming warps of section 8 prefetch a step's Q
// and dO into L2 when the claim finds it the query tile's first visit (its rows likely not read
// since the forward), up to two steps before the producer loads them: 1 (NOTES v66: 16/2 from 8K
// +0.5% over no prefetch at all; in the plain kernels it cost non-causal 512 2-4%, and at head_dim
// 64 it lost to no prefetch).
#ifndef DISTCA_BWD_CHUNK_FIRST_VISIT_PREFETCH
#define DISTCA_BWD_CHUNK_FIRST_VISIT_PREFETCH 1
#endif
// The order in which the chunked kernel (section 10) takes its tiles: WorkCoord's head grouping, K/V
// heads in pairs (NOTES v65: against heads outermost, as the other backwards, 16/2 and 12/2 +3-13%
// at 512-2K on an H100 and an H200, 28/4 within 1-3%; all side by side, 0, lost 28/4 16-20%: NOTES
// v64). The head_dim 256 backward's chunked walk keeps DISTCA_BWD_HEAD_GROUP.
#ifndef DISTCA_BWD_CHUNK_HEAD_GROUP
#define DISTCA_BWD_CHUNK_HEAD_GROUP 2
#endif

#include "bwd_sm90.cuh"
#include "fwd_ws_sm90.cuh"
#include "trace.cuh"


namespace distca {
namespace sm90 {

// BMQ: the query rows of a step, 64, or (head_dim 64: distca_attn_bwd_ws_q128_*, distca_attn.h
// section 13) 128 as two halves of 64 (bwd_step's QH; NOTES v81).
template <int D, int BMQ = 64>
struct BwdWsConfig {
  static constexpr int BM = BMQ, BN = 128, kStages = 2;
  static_assert(BM == 64 || (D == 64 && BM == 128), "64-row steps, or 128 at head_dim 64");
  static constexpr int kThreads = 384;  // a producer warpgroup (one warp works) and two consumer warpgroups
  static constexpr int kSmemKV = BN * D;
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemP = BN * BM;
  // Each consumer warpgroup's BM x 64 fp32 dQ tile, for the TMA reduce-add: double-buffered, or one
  // buffer with 128-row steps (a step then takes long enough for the reduce-add to read it)
  static constexpr int kDqBufs = BM == 64 ? 2 : 1;
  static constexpr int kSmemDq = 2 * kDqBufs * BM * 64;  // floats
  // K, V, stages x (Q, dO), dS^T, the dQ tiles, stages x (LSE, D), the mbarriers, the tile slot
  // and the claiming warps' key-tile ring (128 bytes), the key tile handed to the consumers
  // (BwdTileRec, 128 bytes; 192 with the chunked walk's cursor, section 10), the dQ tiles' hand-over
  // to the dQ thread and the claimed barriers (128 bytes), the kv kernel's step records (BwdStepRec,
  // 64 bytes a stage), plus 1 KiB of alignment
  static constexpr int kSmemBytes = (2 * kSmemKV + 2 * kStages * kSmemQ + kSmemP) * 2 + kSmemDq * 4 +
                                    2 * kStages * BM * 4 + 448 + 64 * kStages + 1024;
};

// The producer's hand-over of a key tile to the consumers: its number (-1 after the last), its
// records and the walk's first position as the producer found them (the consumers' own reads of
// them are ~2,000 cycles of dependent global loads: NOTES v16).
template <typename Tile>
struct BwdTileRec {
  int t;
  int have;
  Tile tile;
  typename Tile::Cursor cur;
};

// (kv kernel) The producer's hand-over of a step (query tile) to the consumers, one per stage: the
// query tile's slice, block and GQA head, and whether the key tile has a step after it, written
// before the stage's full barrier. The consumers then keep no walk state across steps: with it their
// registers spilled at every step (NOTES v63).
struct BwdStepRec {
  distca_slice_t sl;
  int mb, group_head;
  int has_next;
  int pad;  // (never read: the record stays 48 bytes, which its copies compile for; without it the kv
            // kernels' code changes, unmeasured)
};

// Whether the dQ reduce-adds into the fp32 workspace carry an L2 evict_last hint, so that the rows
// every key tile of a query tile adds into stay in L2 against the streamed Q, dO, K and V (NOTES
// v67: H100 causal 512 +1.4-7%, 2K +0.5-2.2%, GQA at 1K-2K +1-5%, long shapes the same).
#ifndef DISTCA_BWD_DQ_EVICT_LAST
#define DISTCA_BWD_DQ_EVICT_LAST 1
#endif
// Adds a box of the tensor map (columns c0.., head c1, rows c2..) from shared memory into global
// memory (TMA reduce-add; the element type is the map's), as one bulk-async group member.
__device__ __forceinline__ void tma_reduce_add_3d(const void* tmap, uint32_t src, int c0, int c1, int c2) {
  if constexpr (DISTCA_BWD_DQ_EVICT_LAST != 0) {
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
    asm volatile(
        "cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.bulk_group.L2::cache_hint [%0, {%2, %3, %4}], [%1], %5;\n" ::"l"(
            tmap),
        "r"(src), "r"(c0), "r"(c1), "r"(c2), "l"(policy)
        : "memory");
  } else {
    asm volatile("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(tmap),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
  }
}
// bwd_store_dkdv through shared memory: this warpgroup's dK (times the softmax scale) and dV, 64
// rows x NC columns each (NC = D: its 64 keys, all columns; NC = D / 2 at head_dim 256: all 64 keys,
// column half wg), go to `stage` (64 x NC each, 128-byte swizzle: conflict-free fragment stores),
// and each warp sends its own 16 rows out as 16-byte stores of whole row segments. The 4-byte
// fragment stores straight from registers cost the short key tiles most (NOTES v12; at head_dim 256
// causal 1K 10%, v76). `stage` (32 KiB x NC / 128 per warpgroup) must be free: no reduce-add or GEMM
// may still read it.
template <typename T, int D, int NC = D>
__device__ __forceinline__ void bwd_store_dkdv_staged(const float (&acc_dk)[NC / 8 * 4], const float (&acc_dv)[NC / 8 * 4],
                                                      const distca_bwd_params_t& p, int kb0, int head_kv, int k_rows, int wg,
                                                      T* stage, int wtid) {
  static_assert(NC == D || NC * 2 == D, "a warpgroup's keys or column half");
  constexpr int NKV = NC / 8;
  const int key0 = NC == D ? wg * 64 : 0, col0 = NC == D ? 0 : wg * NC;
  T* sdK = stage;
  T* sdV = stage + 64 * NC;
  const int lane = wtid & 31, r0 = (wtid >> 5) * 16;  // (r0: the warp's 16 rows of this warpgroup's 64)
  stage_pairs_sw128<64, NKV>(sdK, r0, lane, [&](int j, int h) {
    return Elem<T>::pack(acc_dk[j * 4 + h * 2] * p.scale, acc_dk[j * 4 + h * 2 + 1] * p.scale);
  });
  stage_pairs_sw128<64, NKV>(sdV, r0, lane,
                             [&](int j, int h) { return Elem<T>::pack(acc_dv[j * 4 + h * 2], acc_dv[j * 4 + h * 2 + 1]); });
  __syncwarp();  // a warp's fragments are its own 16 rows: it reads back what it wrote
  const long long kv_stride = (long long)p.heads_kv * D;
  const long long base = ((long long)(kb0 + key0) * p.heads_kv + head_kv) * D + col0;
  T* gdK = reinterpret_cast<T*>(p.dk) + base;
  T* gdV = reinterpret_cast<T*>(p.dv) + base;
  constexpr int CH = NC / 8;  // 16-byte chunks per row
#pragma unroll
  for (int k = lane; k < 16 * CH; k += 32) {
    const int r = r0 + k / CH, c = (k % CH) * 8;
    if (key0 + r < k_rows) {
      *reinterpret_cast<uint4*>(gdK + r * kv_stride + c) = *reinterpret_cast<const uint4*>(sdK + sw128<64>(r, c));
      *reinterpret_cast<uint4*>(gdV + r * kv_stride + c) = *reinterpret_cast<const uint4*>(sdV + sw128<64>(r, c));
    }
  }
}

// Adds `bytes` of fp32 from shared memory at src into global memory at dst (16-byte aligned, bytes
// a multiple of 16), as one bulk-async group member.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}

// What bwd_store_dkdv_staged writes, added instead into the fp32 workspace dkv_accum (distca_attn.h
// section 9: [2][total_k, heads_kv, D], dK's sums then dV's, dK not yet times the softmax scale):
// this warpgroup's part of dK, then of dV - its 64 keys and all D columns, or (NC < D: the
// warpgroups split the columns, head_dim 256) all 64 keys and its NC columns from wg * NC - each
// staged in `stage` (64 rows x NC fp32, unswizzled: each row is one bulk copy's source), and each of
// a warp's own 16 rows sent by one of its lanes as a bulk reduce-add, read before the next matrix
// (or the caller) overwrites the stage. `stage` must be free. (With this tile end, or any other that
// takes the accumulators as fp32, ptxas spilled 150-180 bytes at every step while the consumers
// walked the query tiles themselves; 12 with the step records: NOTES v63.)
template <int D, int NC = D>
__device__ __forceinline__ void bwd_add_dkdv_staged(const float (&acc_dk)[NC / 8 * 4], const float (&acc_dv)[NC / 8 * 4],
                                                    const distca_bwd_params_t& p, float* dkv_accum, int kb0, int head_kv,
                                                    int k_rows, int wg, float* stage, int wtid) {
  constexpr int NKV = NC / 8;
  const int key0 = NC == D ? wg * 64 : 0, col0 = NC == D ? 0 : wg * NC;
  const int lane = wtid & 31, r0 = (wtid >> 5) * 16;  // (r0: the warp's 16 rows of this warpgroup's 64)
  const int wrow = wgmma_acc_row(wtid), quad = lane & 3;  // this thread's accumulator rows wrow and wrow + 8
  const long long kv_stride = (long long)p.heads_kv * D;
  const bool sends = lane < 16 && key0 + r0 + lane < k_rows;  // lane i sends row r0 + i
  float* dst = dkv_accum + ((long long)(kb0 + key0 + r0 + lane) * p.heads_kv + head_kv) * D + col0;
  const uint32_t src = smem_addr(stage + (r0 + lane) * NC);
  auto send = [&](const float (&acc)[NKV * 4], float* to) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wrow + h * 8;
#pragma unroll
      for (int j = 0; j < NKV; ++j) {
        *reinterpret_cast<float2*>(stage + r * NC + j * 8 + quad * 2) = make_float2(acc[j * 4 + h * 2], acc[j * 4 + h * 2 + 1]);
      }
    }
    fence_proxy_async();  // written by ordinary stores, read by the bulk copy (async proxy)
    __syncwarp();         // a warp's fragments are its own 16 rows
    if (sends) {
      bulk_reduce_add_f32(to, src, NC * 4);
      bulk_commit();
      bulk_wait_read<0>();
    }
    __syncwarp();  // read before it is written again
  };
  send(acc_dk, dst);
  send(acc_dv, dst + (long long)p.total_k * kv_stride);
}

#ifdef DISTCA_TRACE_PROBES
// The backward's trace events (trace.cuh; trace.py --pass bwd)
enum BwdTraceEvent {
  kTrTileWait = 1, kTrTileReady, kTrFullWait, kTrFullReady, kTrStepEnd, kTrTileEnd, kTrExit, kTrKvReady,
  kTrStoreReady, kTrRecBegin, kTrRecWait,
  // producer
  kTrPKvWait = 16, kTrPKvIssue
};
#endif

// mbarrier.expect_tx without the arrive: the producer's lanes arrive after their LSE/D stores.
__device__ __forceinline__ void mbar_add_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ uint32_t ld_acquire_gpu(const uint32_t* at) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(at) : "memory");
  return v;
}

// A query tile's Q and dO rows (query head hq, from fused row q_row) into L2 by TMA prefetch, all
// D / 64 column boxes of each (one thread).
template <int D>
__device__ __forceinline__ void tma_prefetch_q_do(const distca_bwd_ws_params_t& P, int hq, int q_row) {
#pragma unroll
  for (int h = 0; h < D / 64; ++h) {
    tma_prefetch_3d(P.tmap_q, h * 64, hq, q_row);
    tma_prefetch_3d(P.tmap_do, h * 64, hq, q_row);
  }
}

// A claiming warp's part of distca_attn.h section 8 (warp 1 or 2), before it releases a stage:
// `claimed` is what its atomicAdd on the word of the query tile's first row (`claim`) returned. The first visitor
// zeroes the tile's `rows` workspace rows of query head hq and marks them, then publishes the first
// row's bit; every later one waits for that bit. Either way, once the warp's lanes arrive on the
// stage, the consumers' reduce-adds (async proxy) follow the zeroes. The zeroes land in L2 as whole
// lines, so the reduce-adds that follow find them there instead of reading bwd_pre's from DRAM.
template <int D>
__device__ __forceinline__ void dq_tile_zero_or_wait(const distca_bwd_params_t& p, uint32_t* claim, uint32_t claimed,
                                                     int hq, int q_row, int rows, int lane) {
  if ((claimed & ~kDqZeroed) == 0) {
    constexpr int CPR = D / 4;     // 16-byte chunks per row
    const int stride = p.heads_q * CPR;  // a row, in chunks
    if constexpr (CPR <= 32) {
      constexpr int RPP = 32 / CPR;  // rows per pass of the warp
      float4* ws = reinterpret_cast<float4*>(p.dq_accum) + ((long long)q_row * p.heads_q + hq) * CPR + lane % CPR;
      for (int r = lane / CPR, at = r * stride; r < rows; r += RPP, at += RPP * stride)
        ws[at] = make_float4(0.f, 0.f, 0.f, 0.f);
    } else {  // head_dim 256: a row per pass, CPR / 32 chunks a lane
      float4* ws = reinterpret_cast<float4*>(p.dq_accum) + ((long long)q_row * p.heads_q + hq) * CPR + lane;
      for (int r = 0, at = 0; r < rows; ++r, at += stride) {
#pragma unroll
        for (int c = 0; c < CPR; c += 32) ws[at + c] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
    for (int r = lane; r < rows; r += 32)
      if (r > 0) claim[r] = kDqZeroed;
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    __threadfence();
    __syncwarp();
    if (lane == 0) {
      __threadfence();
      atomicOr(claim, kDqZeroed);
    }
  } else if (lane == 0) {
    while ((ld_acquire_gpu(claim) & kDqZeroed) == 0) {
    }
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
  }
  __syncwarp();
}

// The fp32 offset of dQ element (row r, column c) in a tile staged as boxes of BM rows x 32 columns
// for the TMA reduce-add (128-byte swizzle): box c / 32, 16-byte chunk (c % 32) / 4 XOR r % 8.
template <int BM>
__device__ __forceinline__ int dq_box_at(int r, int c) {
  return (c >> 5) * (BM * 32) + r * 32 + ((((c & 31) >> 2) ^ (r & 7)) << 2) + (c & 3);
}

// The same for a tile of any multiple of 64 rows staged as tiles of 64 rows in dq_box_at<64>'s layout
// (the dQ map's boxes are 64 rows).
__device__ __forceinline__ int dq_stage_at(int r, int c) {
  return (r >> 6) * (64 * 64) + dq_box_at<64>(r & 63, c);
}

// Stores a warp's dQ fragments (NJ column groups of 8 from column col0, a multiple of 32; the wgmma
// accumulator layout: rows wrow and wrow + 8, columns jj * 8 + quad * 2 + {0, 1}) into the tile at
// `tile` in dq_box_at's layout, in the workspace's column order (kDqWsPermuted<D>).
template <int D, int BM, int NJ>
__device__ __forceinline__ void stage_dq_fragments(float* tile, const float (&acc)[NJ * 4], int wrow, int quad, int col0) {
  static_assert(NJ % 4 == 0, "whole 32-column boxes");
  if constexpr (kDqWsPermuted<D>) {
    // Column group jj's four registers as four 8x8 b16 matrices (one fp32 = two b16): matrix
    // h * 2 + e holds the warp's rows h * 8 + 0..7 and the columns e, 2 + e, 4 + e, 6 + e of the
    // group, the 16-byte chunk at permuted columns e * 4 .. e * 4 + 3. Lane l gives the address of
    // row l % 8 of matrix l / 8; the swizzle puts a matrix's 8 rows in 8 different chunks, so each
    // matrix is one wavefront.
    const int g = wrow & 7;
    const int row = (wrow & ~7) + ((g >> 2) & 1) * 8 + (((g & 1) << 2) | quad);
    const int e4 = ((g >> 1) & 1) * 4;
#pragma unroll
    for (int jj = 0; jj < NJ; ++jj) {
      stmatrix_x4(smem_addr(tile + dq_box_at<BM>(row, col0 + jj * 8 + e4)), __float_as_uint(acc[jj * 4]),
                  __float_as_uint(acc[jj * 4 + 1]), __float_as_uint(acc[jj * 4 + 2]), __float_as_uint(acc[jj * 4 + 3]));
    }
  } else {  // (8-byte stores: a half-warp's four rows meet two in each bank)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int jj = 0; jj < NJ; ++jj) {
        *reinterpret_cast<float2*>(tile + dq_box_at<BM>(wrow + h * 8, col0 + jj * 8 + quad * 2)) =
            make_float2(acc[jj * 4 + h * 2], acc[jj * 4 + h * 2 + 1]);
      }
    }
  }
}

// A dQ tile staged in dq_box_at's layout (kBoxes boxes of BM rows x 32 columns) added into the fp32
// workspace (map `tmap`) at columns col0.., query head hq, fused rows row0.., by TMA reduce-adds
// committed as one bulk-async group; the caller waits for its read before the buffer is written again.
template <int BM, int kBoxes>
__device__ __forceinline__ void dq_tile_reduce_add(const void* tmap, const float* tile, int col0, int hq, int row0) {
#pragma unroll
  for (int box = 0; box < kBoxes; ++box) tma_reduce_add_3d(tmap, smem_addr(tile + box * BM * 32), col0 + box * 32, hq, row0);
  bulk_commit();
}

// A producer warp's LSE (log2 domain; +inf for rows past the slice or rows that saw no key, so
// that P = 0) and D of the query tile's rows lane, lane + 32, ... into registers.
template <int BM>
__device__ __forceinline__ void bwd_lse_dsum_lanes(const distca_bwd_params_t& p, int hq, int q_row, int rows, int lane,
                                                   float (&lse)[BM / 32], float (&dsum)[BM / 32]) {
  constexpr float kLog2e = 1.4426950408889634f;
#pragma unroll
  for (int k = 0; k < BM / 32; ++k) {
    const int r = lane + 32 * k;
    lse[k] = INFINITY;  // rows past the slice: P = 0
    dsum[k] = 0.f;
    if (r < rows) {
      const long long idx = (long long)hq * p.total_q + q_row + r;
      const float l = reinterpret_cast<const float*>(p.lse)[idx];
      lse[k] = l == -INFINITY ? INFINITY : l * kLog2e;
      dsum[k] = reinterpret_cast<const float*>(p.dsum)[idx];
    }
  }
}

// kAddKv: the work list may hold group splits, and the key tiles' dK and dV go into the fp32
// workspace dkv_accum (section 9) instead of dK and dV (distca_attn_bwd_ws_kv_*).
template <typename T, int D, bool kAddKv, int kChunk = 0, int BMQ = 64>
__device__ __forceinline__ void bwd_ws_kernel_body(const distca_bwd_ws_params_t& P) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = BwdWsConfig<D, BMQ>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, S = Cfg::kStages;
  constexpr int NKV = D / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert(D == 64 || D == 128, "head_dim 64 or 128: whole 64-column boxes");
  const distca_bwd_params_t& p = P.base;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + Cfg::kSmemKV;
  T* sQ = sV + Cfg::kSmemKV;       // [S][BM][D]
  T* sdO = sQ + S * Cfg::kSmemQ;   // [S][BM][D]
  T* sdS = sdO + S * Cfg::kSmemQ;  // [BN keys][BM queries]: dS^T
  // [warpgroup][buffer][2 boxes of 64 rows x 32 columns, 128-byte swizzled] fp32 (BM / 64 of those a
  // buffer)
  float* sdQ = reinterpret_cast<float*>(sdS + Cfg::kSmemP);
  // warpgroup w's dQ tile of the steps with it & 1 == b (one buffer for both with 128-row steps), which
  // also stages its dK/dV at a key tile's end
  auto dq_buffer = [&](int w, int b) { return sdQ + (w * Cfg::kDqBufs + b % Cfg::kDqBufs) * BM * 64; };
  float* sLse = sdQ + Cfg::kSmemDq;  // [S][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + S * BM;                               // [S][BM]
  uint64_t* bars = reinterpret_cast<uint64_t*>(sDsum + S * BM);
  const uint32_t bar_kv = smem_addr(bars);
  const uint32_t bar_kv_empty = smem_addr(bars + 1);
  auto bar_full = [&](int s) { return smem_addr(bars + 2 + s); };
  auto bar_empty = [&](int s) { return smem_addr(bars + 2 + S + s); };
  // warp 0's lane 0, once it has written the next key tile into tile_slot (phase j: tile j): the
  // consumers take it before the previous tile's dK/dV stores
  const uint32_t bar_tile = smem_addr(bars + 2 + 2 * S);
  // (group splits come only with the workspace: section 9)
  using Tile = BwdTile<BN, kAddKv, kChunk, (kChunk > 0 ? DISTCA_BWD_CHUNK_HEAD_GROUP : DISTCA_BWD_HEAD_GROUP)>;
  using Cursor = typename Tile::Cursor;
  using TileRec = BwdTileRec<Tile>;
  // the tile slot: 128 bytes after the mbarriers (192 with the chunked walk's cursor)
  constexpr int kSlotWords = kChunk > 0 ? 24 : 16;
  TileRec* tile_slot = reinterpret_cast<TileRec*>(bars + 16);
  static_assert(sizeof(TileRec) <= 8 * kSlotWords, "the tile hand-over fits in its slot");
  // section 8 (dq_claims): warp 0 hands each key tile after the first (blockIdx.x) to warps 1 and 2
  // through a two-entry ring (kslot, with a "written" and a "read" barrier per entry); each of them
  // walks the tile's query tiles as warp 0 does, and for those of one stage (warp 1 stage 0, warp 2
  // stage 1) claims the tile, zeroes it or waits until it is zero, and arrives on the stage's full
  // barrier beside warp 0's lanes. A warp claims as soon as it is done with its previous stage and
  // waits only for the phase before its own arrival, so it runs ahead of the consumers by the stage
  // ring's depth. Two warps because one claim can take longer than a step: where the key tiles of
  // a query shard's document prefix walk its query tiles side by side, all but one of them wait for
  // that one's zeroes.
  auto bar_kmeta = [&](int e) { return smem_addr(bars + 3 + 2 * S + e); };
  auto bar_kfree = [&](int e) { return smem_addr(bars + 5 + 2 * S + e); };
  volatile int* kslot = reinterpret_cast<volatile int*>(bars + 7 + 2 * S);  // [2]
  // every consumer thread, once past phase A of a step of stage s (its last read of V in the step):
  // where that step is a key tile's last, the next tile's V may load while phases B and C run
  auto bar_adone = [&](int s) { return smem_addr(bars + 8 + 2 * S + s); };
  // (kStagger) every thread of consumer warpgroup 0, once past phase A of a key tile's first step
  const uint32_t bar_stag = smem_addr(bars + 8 + 3 * S);
  static_assert(9 + 3 * S <= 16, "the mbarriers and slots fit in 128 bytes");
  // (kDqThread) the dQ thread (warp 3's lane 0) issues the consumers' reduce-adds: dQ tile (w, b) is
  // warpgroup w's buffer b (the it-th step overall uses b = it & 1). Its 128 threads arrive on
  // dq_staged once they have written it (and one of them its fused row and query head into
  // dq_coord; row < 0: no more tiles); the dQ thread arrives on dq_free once the reduce-add has read it.
  constexpr bool kDqThread = DISTCA_BWD_DQ_THREAD != 0;
  constexpr bool kLateAnnounce = kDqThread && DISTCA_BWD_DQ_LATE_ANNOUNCE != 0;
  constexpr bool kEarlyEmpty = kLateAnnounce && D <= DISTCA_BWD_EARLY_EMPTY_MAX_D;
  uint64_t* dq_bars = bars + 16 + kSlotWords;  // after the tile slot
  auto bar_dq_staged = [&](int w, int b) { return smem_addr(dq_bars + w * 2 + b); };
  auto bar_dq_free = [&](int w, int b) { return smem_addr(dq_bars + 4 + w * 2 + b); };
  int2* dq_coord = reinterpret_cast<int2*>(dq_bars + 8);  // [w][b]
  const bool claiming = p.dq_claims != 0;
  // (section 8, kClaimsOffPath) stage s's step claimed: its dQ rows zeroed by this CTA or by their
  // first visitor (the claiming warp's lanes). The dQ thread waits for it before the step's
  // reduce-adds, the consumers do not, so that the claims' round trips and zeroes run under the step
  // (NOTES v60). Otherwise the claiming warps arrive on the stage's full barrier.
  auto bar_claimed = [&](int s) { return smem_addr(dq_bars + 12 + s); };
  static_assert(12 + S <= 16, "the dQ hand-over and the claimed barriers fit in its 128 bytes");
  BwdStepRec* step_rec = reinterpret_cast<BwdStepRec*>(dq_bars + 16);  // [S] (kAddKv), after the dQ hand-over
  static_assert(sizeof(BwdStepRec) <= 64, "a step record fits in 64 bytes (kSmemBytes)");
  constexpr bool kClaimsOffPath = kDqThread && D <= DISTCA_BWD_CLAIMS_OFF_PATH_MAX_D;

  const int tid = threadIdx.x;
  const int tiles = p.num_work * p.heads_kv;
  if (tid == 0) {
    mbar_init(bar_kv, 1);
    mbar_init(bar_kv_empty, 256);  // every consumer thread, after its last GEMM on the tile's K and V
    for (int s = 0; s < S; ++s) {
      // warp 0's lanes after their LSE/D stores (and, without kClaimsOffPath, warp 1 + s's)
      mbar_init(bar_full(s), claiming && !kClaimsOffPath ? 64 : 32);
      if (kClaimsOffPath) mbar_init(bar_claimed(s), 32);
      mbar_init(bar_empty(s), 256);                // every consumer thread, once done with the stage
    }
    for (int e = 0; e < 2; ++e) {
      mbar_init(bar_kmeta(e), 1);
      mbar_init(bar_kfree(e), 2);
    }
    for (int s = 0; s < S; ++s) mbar_init(bar_adone(s), 256);
    mbar_init(bar_stag, 128);
    mbar_init(bar_tile, 1);
    for (int w = 0; w < 2; ++w) {
      for (int b = 0; b < 2; ++b) {
        mbar_init(bar_dq_staged(w, b), 128);
        mbar_init(bar_dq_free(w, b), 1);
      }
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // The j-th key tile of this CTA is in tile_slot (t = -1 after the last) once bar_tile completes
  // its phase j, its K and V once bar_kv completes phase j; the it-th query tile overall uses stage
  // it % S. Phases count on across key tiles.
  if (tid < 128) {
    // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid < 32) {
      const int lane = tid;
      int* counter = reinterpret_cast<int*>(P.tile_counter);
#ifdef DISTCA_TRACE_PROBES
      Trace<true> tr;
#endif
      int it = 0;
      int t = blockIdx.x;
      int last_s = -1, last_parity = 0;  // the stage and phase of the previous key tile's last step (-1: none)
      for (int j = 0;; ++j) {
        if (t >= tiles) {
          if (j >= 1) mbar_wait(bar_kv_empty, (j - 1) & 1);
          if (lane == 0) {
            tile_slot->t = -1;
            mbar_arrive(bar_tile);
            mbar_arrive(bar_kv);  // released by the arrive: the consumers stop
          }
          DISTCA_TRACE_P(tr.done());
          break;
        }
        // V first, once the consumers are past phase A of the previous tile's last step (or, if that
        // tile had no step, once they are done with it: its K/V copies landed then), then K once they
        // are done with the tile: the next tile's V lands under the last step's phases B and C
        // (NOTES v15)
        if (j >= 1) {
          if (last_s >= 0) mbar_wait(bar_adone(last_s), last_parity);
          else mbar_wait(bar_kv_empty, (j - 1) & 1);
        }
        const Tile tile(p, t, P.band_end);
        const int group = tile.group, head_kv = tile.head_kv;
        if (lane == 0) {
          mbar_expect_tx(bar_kv, 2 * BN * D * 2);
#pragma unroll
          for (int h = 0; h < D / 64; ++h)
            tma_load_3d(smem_addr(sV + h * BN * 64), P.tmap_v, bar_kv, h * 64, head_kv, tile.kb0);
        }
        // the walk's first position, and the tile for the consumers (before K, which waits for them
        // to be done with the previous tile)
        Cursor cur = tile.template start<BM>();
        bool have = tile.template seek<BM>(cur);
        if (lane == 0) {
          tile_slot->t = t;
          tile_slot->have = have;
          tile_slot->tile = tile;
          tile_slot->cur = cur;
          mbar_arrive(bar_tile);  // (phase j + 1 cannot complete before the consumers have seen phase j)
        }
        DISTCA_TRACE_P(tr.rec(kTrPKvWait));
        if (j >= 1 && last_s >= 0) mbar_wait(bar_kv_empty, (j - 1) & 1);
        if (lane == 0) {
#pragma unroll
          for (int h = 0; h < D / 64; ++h)
            tma_load_3d(smem_addr(sK + h * BN * 64), P.tmap_k, bar_kv, h * 64, head_kv, tile.kb0);
        }
        DISTCA_TRACE_P(tr.rec(kTrPKvIssue));
        last_s = -1;
        for (; have; ++it) {  // (the next step is sought at the end)
          const int s = it % S;
          last_s = s;
          last_parity = (it / S) & 1;
          const int hq = head_kv * group + cur.group_head;
          const int m0 = cur.mb * BM;
          const int q_row = cur.sl.q_start + m0;
          // (DISTCA_BWD_QDO_PREFETCH_D) The tile's Q and dO into L2 while the stage drains (NOTES v15,
          // v66), and its LSE and D into registers
          if (D == DISTCA_BWD_QDO_PREFETCH_D && !kAddKv && kChunk == 0 && lane == 0) tma_prefetch_q_do<D>(P, hq, q_row);
          const int rows = min(BM, cur.sl.q_len - m0);
          float lse[BM / 32], dsum[BM / 32];
          bwd_lse_dsum_lanes<BM>(p, hq, q_row, rows, lane, lse, dsum);
          if (it >= S) mbar_wait(bar_empty(s), ((it / S) - 1) & 1);
          if (lane == 0) {
            mbar_add_tx(bar_full(s), 2 * BM * D * 2);
#pragma unroll
            for (int h = 0; h < D / 64; ++h) {
#pragma unroll
              for (int r = 0; r < BM; r += 64) {  // (the maps' boxes are 64 rows)
                tma_load_3d(smem_addr(sQ + s * Cfg::kSmemQ + h * BM * 64 + r * 64), P.tmap_q, bar_full(s), h * 64, hq,
                            q_row + r);
                tma_load_3d(smem_addr(sdO + s * Cfg::kSmemQ + h * BM * 64 + r * 64), P.tmap_do, bar_full(s), h * 64, hq,
                            q_row + r);
              }
            }
          }
#pragma unroll
          for (int k = 0; k < BM / 32; ++k) {
            sLse[s * BM + lane + 32 * k] = lse[k];
            sDsum[s * BM + lane + 32 * k] = dsum[k];
          }
          if constexpr (kAddKv) {  // the step's record, whether another follows included (the seek
            if (lane == 0) {       // runs under the stage's loads)
              step_rec[s].sl = cur.sl;
              step_rec[s].mb = cur.mb;
              step_rec[s].group_head = cur.group_head;
            }
            have = tile.template seek_next<BM>(cur);
            if (lane == 0) step_rec[s].has_next = have;
          }
          mbar_arrive(bar_full(s));  // release: this lane's LSE/D (and record) stores are visible to the waiters
          if constexpr (!kAddKv) have = tile.template seek_next<BM>(cur);
        }
        t = __shfl_sync(0xffffffffu, lane == 0 ? next_tile(counter, t) : 0, 0);  // lane 0's, for the warp
        if (claiming && lane == 0) {  // to warps 1 and 2, once they have read entry j - 2
          if (j >= 2) mbar_wait(bar_kfree(j & 1), ((j >> 1) - 1) & 1);
          kslot[j & 1] = t;
          mbar_arrive(bar_kmeta(j & 1));
        }
        if (lane == 0 && t < tiles) {
          // The next key tile's K and V into L2 while the consumers finish this one (the producer runs
          // ahead by the stage ring): its load into shared memory, which must wait for them, then
          // reads L2 rather than DRAM.
          const Tile next(p, t, P.band_end);
#pragma unroll
          for (int h = 0; h < D / 64; ++h) {
            tma_prefetch_3d(P.tmap_k, h * 64, next.head_kv, next.kb0);
            tma_prefetch_3d(P.tmap_v, h * 64, next.head_kv, next.kb0);
          }
        }
      }
    } else if (tid < 32 + 32 * S && claiming) {
      // warps 1 and 2: section 8, the query tiles of stage `mine`
      static_assert(S == 2, "one claiming warp per stage: warps 1 and 2");
      const int lane = tid & 31, mine = (tid >> 5) - 1;
      uint32_t* claims = reinterpret_cast<uint32_t*>(p.dq_claims);
      int it = 0;
      for (int t = blockIdx.x, j = 0; t < tiles; ++j) {
        const Tile tile(p, t, P.band_end);
        Cursor cur = tile.template start<BM>();
        for (bool have = tile.template seek<BM>(cur); have; have = tile.template seek_next<BM>(cur), ++it) {
          const int s = it % S;
          if (s != mine) continue;
          const int hq = tile.head_kv * tile.group + cur.group_head;
          const int m0 = cur.mb * BM;
          const int q_row = cur.sl.q_start + m0;
          uint32_t* claim = claims + (long long)hq * p.total_q + q_row;
          uint32_t claimed = 0;
          if (lane == 0) claimed = atomicAdd(claim, 1u);
          if (kChunk > 0 && DISTCA_BWD_CHUNK_FIRST_VISIT_PREFETCH && lane == 0 && (claimed & ~kDqZeroed) == 0)
            tma_prefetch_q_do<D>(P, hq, q_row);  // the first visit
          dq_tile_zero_or_wait<D>(p, claim, __shfl_sync(0xffffffffu, claimed, 0), hq, q_row, min(BM, cur.sl.q_len - m0),
                                  lane);
          if constexpr (kClaimsOffPath) {
            // the arrival counts for step it once the dQ thread is done with step it - S (its
            // reduce-adds waited for that step's phase; warpgroup 1's buffer is freed last)
            if (it >= S) mbar_wait(bar_dq_free(1, it & 1), ((it >> 1) - 1) & 1);
            mbar_arrive(bar_claimed(s));  // release: the zeroes (or the wait for them) come before the reduce-adds
          } else {
            // the arrival counts for stage it once the phase of stage it - S is complete (it needed
            // this warp's own arrival, so no older phase of the barrier is pending)
            if (it >= S) mbar_wait(bar_full(s), ((it / S) - 1) & 1);
            mbar_arrive(bar_full(s));  // release: the zeroes (or the wait for them) come before the reduce-adds
          }
        }
        mbar_wait(bar_kmeta(j & 1), (j >> 1) & 1);
        t = kslot[j & 1];
        __syncwarp();
        if (lane == 0) mbar_arrive(bar_kfree(j & 1));
      }
    } else if (kDqThread && tid == 96) {
      // the dQ thread: each step's two dQ tiles (warpgroup 0's, then 1's: both run every step), in
      // step order, one at a time: each buffer is freed as soon as its reduce-add has read it (one
      // kept in flight while the next is staged ran 0.4-0.8% slower at head_dim 128, the same at 64:
      // NOTES v52)
      for (int it = 0;; ++it) {
        const int b = it & 1;
#pragma unroll
        for (int w = 0; w < 2; ++w) {
          mbar_wait(bar_dq_staged(w, b), (it >> 1) & 1);
          const int2 at = dq_coord[w * 2 + b];
          if (at.x < 0) {
            bulk_wait<0>();  // the reduce-adds are done before the CTA and its shared memory go
            return;
          }
          if (kClaimsOffPath && w == 0 && claiming) mbar_wait(bar_claimed(it & 1), (it >> 1) & 1);  // acquire: the zeroes
          // (kLateAnnounce) the consumers' ordinary stores, acquired above, before the TMA's reads
          if constexpr (kLateAnnounce) fence_proxy_async();
#pragma unroll
          for (int r = 0; r < BM; r += 64)  // (the map's boxes are 64 rows: dq_stage_at)
            dq_tile_reduce_add<64, 2>(P.tmap_dq_accum, dq_buffer(w, b) + r * 64, dq_column<D>(w), at.y, at.x + r);
          bulk_wait_read<0>();
          mbar_arrive(bar_dq_free(w, b));
        }
      }
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int ctid = tid - 128;
  // the warpgroup through a shuffle from lane 0 (CUTLASS's canonical_warp_group_idx, as the forward):
  // ptxas then keeps it, and the k-steps' descriptors built from it, in uniform registers (NOTES v98:
  // R2UR 258 -> 114 in the d128 kernel; d128 +0.5-1%, d64 +0.5-4%)
  const int wg = __shfl_sync(0xffffffffu, ctid >> 7, 0);  // keys [64 wg, 64 wg + 64)
  const int wrow = wgmma_acc_row(ctid);
  const int quad = ctid & 3;
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t aK = smem_addr(sK), aV = smem_addr(sV);
  auto consumers_sync = [] { bar_sync_256<1>(); };
  constexpr bool kDecoupled = D <= DISTCA_BWD_DECOUPLED_MAX_D;
  constexpr bool kDsSplit = !kDecoupled && DISTCA_BWD_DS_SPLIT_SYNC;  // (bwd_step's kDsSplit)
  if constexpr (kDsSplit) ds_free_arrive(wg);  // as if a phase C had come before the first step
  constexpr bool kLseEarly = D == DISTCA_BWD_LSE_EARLY_D && !kAddKv;  // (bwd_step's kLseEarly)
  auto dst_sync = [&] {
    if constexpr (kDecoupled) warpgroup_sync(wg);
    else consumers_sync();
  };
  const bool elected = !kDqThread && (ctid & 127) == 0;  // issues this warpgroup's dQ reduce-adds
  // (kStagger) the phase of bar_stag that warpgroup 1 waits for at its next key tile's first step
  constexpr bool kStagger = kDecoupled && D <= DISTCA_BWD_STAGGER_MAX_D;
  uint32_t stag_phase = 0;
#ifdef DISTCA_TRACE_PROBES
  Trace<> tr;
#endif
  int it = 0;
  // (kLateAnnounce) the dQ buffer this warpgroup has staged and not yet announced to the dQ thread
  // (-1: none), and its announcement: after the next step's phase A, or once the key tile has no
  // more steps (before its dK/dV staging, which waits for the dQ thread to free both buffers)
  int dq_unannounced = -1;
  auto announce_dq = [&] {
    if (kLateAnnounce && dq_unannounced >= 0) {
      mbar_arrive(bar_dq_staged(wg, dq_unannounced));  // release: the tile (and the coordinates) for the dQ thread
      dq_unannounced = -1;
    }
  };
  // A key tile (tile_slot: the producer's records and first query tile) is taken as soon as the
  // producer has published it, before the previous tile's dK/dV stores (NOTES v16; kAddKv: after
  // the previous tile's adds, NOTES v62)
  Tile tile;
  Cursor cur;
  bool have = false;
  int t;
  auto take_tile = [&] {
    t = tile_slot->t;
    if (t < 0) return;  // (nothing past the last tile)
    tile = tile_slot->tile;
    if constexpr (!kAddKv) cur = tile_slot->cur;  // (kAddKv: each step's from its record)
    have = tile_slot->have != 0;
  };
  mbar_wait(bar_tile, 0);
  take_tile();
  for (int j = 0;; ++j) {
    DISTCA_TRACE(tr.rec(kTrTileWait));
    if (t < 0) break;
    mbar_wait(bar_kv, j & 1);  // also where no query tile sees the key tile: the copies land before reuse
    DISTCA_TRACE(tr.rec(kTrKvReady));
    // K's and V's A fragments for phase A and K^T's for phase C (kKvFrag), once the tile's K and V
    // have landed
    uint32_t kv_frag[kKvFrag<D> ? 3 * (D / 16) : 1][4];
    if constexpr (kKvFrag<D>) {
      load_a_frag<D, BN>(*reinterpret_cast<uint32_t(*)[D / 16][4]>(&kv_frag[0]), sK, wg, wrow, quad);
      load_a_frag<D, BN>(*reinterpret_cast<uint32_t(*)[D / 16][4]>(&kv_frag[D / 16]), sV, wg, wrow, quad);
      load_at_frag<D, BN>(*reinterpret_cast<uint32_t(*)[4][4]>(&kv_frag[2 * (D / 16)]), sK, wg, wrow, quad);
    }
    const int group = tile.group, head_kv = tile.head_kv;
    float acc_dk[NKV * 4], acc_dv[NKV * 4];
#pragma unroll
    for (int i = 0; i < NKV * 4; ++i) acc_dk[i] = acc_dv[i] = 0.f;
    DISTCA_TRACE(tr.rec(kTrTileReady));
    bool first_step = true;
    bool next_have = false;  // (kAddKv) from the step's record
    auto walk_on = [&] {
      if constexpr (kAddKv) return next_have;
      else return tile.template seek_next<BM>(cur, p);
    };
    for (; have; have = walk_on(), ++it) {
      const int s = it % S;
      DISTCA_TRACE(tr.rec(kTrFullWait));
      mbar_wait(bar_full(s), (it / S) & 1);
      if constexpr (kAddKv) {  // (read before the stage, and with it the record, is released)
        cur.sl = step_rec[s].sl;
        cur.mb = step_rec[s].mb;
        cur.group_head = step_rec[s].group_head;
        next_have = step_rec[s].has_next != 0;
      }
      // (kStagger) warpgroup 1 starts a key tile's first step once warpgroup 0 is past its phase A.
      // Phase k is warpgroup 0's arrival in its k-th key tile with steps; it cannot arrive in the
      // next one before both warpgroups are done with this one (bar_kv), so warpgroup 1's wait sees
      // no later phase.
      if (kStagger && first_step) {
        stagger_wait(bar_stag, stag_phase, wg);
        stag_phase ^= 1;
      }
      const bool stag_arrive = kStagger && first_step && wg == 0;
      first_step = false;
      DISTCA_TRACE(tr.rec(kTrFullReady));
      // both warpgroups are past the previous tile's phase C: dS^T may be overwritten (kDsSplit: each
      // warpgroup waits for the other's phase C only before it writes dS^T, in bwd_step)
      if constexpr (!kDecoupled && !kDsSplit) consumers_sync();
      // (kDqThread) the reduce-add that last read this step's dQ buffer (two steps ago) is done with
      // it (waited for here: at the end of bwd_step, where the accumulators are live, it spilled: v18)
      // (one buffer: the previous step's reduce-add, announced after this step's phase A, so waited for
      // in store_dq. The barriers stay two per warpgroup, used by steps in turn, so that every parity
      // wait names a barrier's current phase or the one before it.)
      constexpr int NB = Cfg::kDqBufs;
      if (kDqThread && NB == 2 && it >= 2) mbar_wait(bar_dq_free(wg, it & 1), ((it >> 1) - 1) & 1);
      // dQ leaves through the TMA: the warpgroup's tile goes to shared memory (the buffer of two tiles
      // ago, once its reduce-add has read it) and one thread issues its reduce-add into the fp32
      // workspace, so no atomics sit on the consumers' path. Rows past the slice hold exact zeros
      // (their P and dS are 0), so adding them to whatever rows follow changes nothing.
      float* dq_tile = dq_buffer(wg, it & 1);
      auto store_dq = [&](const float (&acc_dq)[BM / 2], int row0, int hq, int) {
        // (the reduce-add that last read this buffer, two tiles ago, is done with it: waited for at
        // the step's start (kDqThread), or by the elected thread right after it issued the previous
        // tile's, before this tile's consumer barriers)
        // element (row r, column c) of the 64 x 64 tile: box c / 32, 16-byte chunk (c % 32) / 4
        auto at = [](int r, int c) { return dq_stage_at(r, c); };
        if constexpr (kEarlyEmpty) mbar_arrive(bar_empty(s));  // the step's GEMMs are done with the stage
        if constexpr (kDqThread && NB == 1) {
          if (it >= 1) mbar_wait(bar_dq_free(wg, (it - 1) & 1), ((it - 1) >> 1) & 1);
        }
        if constexpr (kKvFrag<D>) {  // dQ^T's fragments (rows d, columns queries): one element at a time
#pragma unroll
          for (int h = 0; h < 2; ++h) {
#pragma unroll
            for (int jj = 0; jj < BM / 8; ++jj) {
#pragma unroll
              for (int e = 0; e < 2; ++e) dq_tile[at(jj * 8 + quad * 2 + e, dq_ws_column<D>(wrow + h * 8))] = acc_dq[jj * 4 + h * 2 + e];
            }
          }
        } else {
          stage_dq_fragments<D, BM, 8>(dq_tile, acc_dq, wrow, quad, 0);
        }
        // the tile was written by ordinary stores; the TMA reads through the async proxy (kLateAnnounce:
        // the dQ thread fences after its wait)
        if constexpr (!kLateAnnounce) fence_proxy_async();
        if constexpr (kDqThread) {
          if ((ctid & 127) == 0) dq_coord[wg * 2 + (it & 1)] = make_int2(row0, hq);
          if constexpr (kLateAnnounce) dq_unannounced = it & 1;
          else mbar_arrive(bar_dq_staged(wg, it & 1));  // release: the tile (and the coordinates) for the dQ thread
          return;
        }
        warpgroup_sync(wg);
        if (elected) {
          static_assert(!(BM > 64 && !kDqThread), "128-row steps: the dQ thread");
          dq_tile_reduce_add<64, 2>(P.tmap_dq_accum, dq_tile, dq_column<D>(wg), hq, row0);
          bulk_wait_read<1>();  // the previous tile's has read its buffer: the next tile may write it
        }
      };
      // one block step with the mask and one without any mask code, for query tiles that see every key,
      // and (D = 128) one for query tiles that see none of the tile's upper 64 keys (bwd_upper_hidden)
      auto step = [&](auto may_mask, auto upper_hidden) {
        bwd_step<T, D, decltype(may_mask)::value, decltype(upper_hidden)::value, kKvFrag<D>, BM / 64, kDsSplit,
                 kLseEarly>(
            acc_dk, acc_dv, p, cur, head_kv, group, tile.kb0, aK, aV, smem_addr(sQ + s * Cfg::kSmemQ),
            smem_addr(sdO + s * Cfg::kSmemQ), sdS, sLse + s * BM, sDsum + s * BM, wg, wrow, quad, scale_log2,
            dst_sync, store_dq,
            [&] {
              announce_dq();  // the previous step's dQ
              mbar_arrive(bar_adone(s));
              if (stag_arrive) mbar_arrive(bar_stag);
            },
            kv_frag);
      };
      if (keys_all_visible(cur.sl, tile.kb0 - cur.sl.k_start, BN, (long long)cur.mb * BM + cur.sl.diagonal)) {
        step(std::false_type(), std::false_type());
        DISTCA_TRACE(tr.rec(kTrStepEnd, 0));
      } else if (D == 128 && bwd_upper_hidden<BM, BN>(cur, tile.kb0)) {
        step(std::true_type(), std::integral_constant<bool, D == 128>());
        DISTCA_TRACE(tr.rec(kTrStepEnd, 2));
      } else {
        step(std::true_type(), std::false_type());
        DISTCA_TRACE(tr.rec(kTrStepEnd, 1));
      }
      // bwd_step waited for all its GEMMs: this thread is done with the stage (kEarlyEmpty: said so before
      // its dQ stores)
      if constexpr (!kEarlyEmpty) mbar_arrive(bar_empty(s));
    }
    mbar_arrive(bar_kv_empty);  // and with K and V: the next key tile's load runs under the stores below
    announce_dq();  // the tile's last step's dQ: no step follows to announce it
    const int kb0 = tile.kb0, k_rows = tile.k_rows;
    DISTCA_TRACE(tr.rec(kTrRecBegin));
    if constexpr (!kAddKv) {  // (kAddKv: after the tile's adds below, 2.5-5% faster so: NOTES v62)
      mbar_wait(bar_tile, (j + 1) & 1);  // the next tile
      DISTCA_TRACE(tr.rec(kTrRecWait));
      take_tile();
    }
    // dK and dV leave through this warpgroup's dQ buffers, once its reduce-adds have read them
    if constexpr (kDqThread) {  // the last use of buffer b was the uses-th, uses = the steps so far with it & 1 == b
#pragma unroll
      for (int b = 0; b < 2; ++b) {
        const int uses = (it + 1 - b) >> 1;
        if (uses > 0) mbar_wait(bar_dq_free(wg, b), (uses - 1) & 1);
      }
    } else {
      if (elected) bulk_wait_read<0>();
      warpgroup_sync(wg);
    }
    DISTCA_TRACE(tr.rec(kTrStoreReady));
    if constexpr (kAddKv) {  // section 9: the sums of the tile's group split into the fp32 workspace
      bwd_add_dkdv_staged<D>(acc_dk, acc_dv, p, reinterpret_cast<float*>(P.dkv_accum), kb0, head_kv, k_rows, wg,
                             dq_buffer(wg, 0), ctid & 127);
      mbar_wait(bar_tile, (j + 1) & 1);  // the next tile
      DISTCA_TRACE(tr.rec(kTrRecWait));
      take_tile();
    } else {
      bwd_store_dkdv_staged<T, D>(acc_dk, acc_dv, p, kb0, head_kv, k_rows, wg,
                                  reinterpret_cast<T*>(dq_buffer(wg, 0)), ctid & 127);
    }
    DISTCA_TRACE(tr.rec(kTrTileEnd));
  }
  DISTCA_TRACE(tr.rec(kTrExit); tr.done());
  if constexpr (kDsSplit) ds_free_wait(wg);  // the other warpgroup's last arrival
  if constexpr (kDqThread) {
    // the dQ thread stops (at this warpgroup's buffer of the step that did not come; the ones before
    // are free: the last key tile's dK/dV staging waited for them)
    if ((ctid & 127) == 0) dq_coord[wg * 2 + (it & 1)] = make_int2(-1, 0);
    mbar_arrive(bar_dq_staged(wg, it & 1));
  }
  if (elected) bulk_wait<0>();  // the reduce-adds are done before the CTA and its shared memory go
#else
  __trap();
#endif
}

// distca_attn_bwd_ws_* (head_dim 64 and 128)
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_kernel(const distca_bwd_ws_params_t& P) {
  bwd_ws_kernel_body<T, D, false>(P);
}

// distca_attn_bwd_ws_q128_* (section 13, head_dim 64): the same with steps of 128 query rows, two
// halves of 64 through phases A and B and one phase C (NOTES v81).
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_q128_kernel(const distca_bwd_ws_params_t& P) {
  static_assert(D == 64, "128-row steps at head_dim 64");
  bwd_ws_kernel_body<T, D, false, 0, 128>(P);
}

// distca_attn_bwd_ws_chunked_* (section 10): the same walking the GQA group's heads in chunks of
// kBwdChunkTiles query tiles. A kernel of its own, for groups of DISTCA_BWD_CHUNK_MIN_GROUP heads and
// more: the chunks' walk state cost MHA's backward 1-2% (NOTES.md v64).
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_chunked_kernel(const distca_bwd_ws_params_t& P) {
  bwd_ws_kernel_body<T, D, false, kBwdChunkTiles>(P);
}

// distca_attn_bwd_ws_kv_* (section 9): the same with group splits, dK and dV into dkv_accum. A kernel
// of its own: in one function with the other, ptxas allocated both bodies' registers together.
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_kv_kernel(const distca_bwd_ws_params_t& P) {
  bwd_ws_kernel_body<T, D, true>(P);
}

}  // namespace sm90
}  // namespace distca
