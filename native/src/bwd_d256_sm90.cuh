// Backward of head_dim 256 on Hopper (sm_90a) with warpgroup MMA: one step (bwd_d256_step) and two
// kernels around it. Tiles of BM = 64 queries and BN = 64 keys; the two consumer warpgroups split
// the head dim instead of the keys: warpgroup g holds the dK and dV columns [128g, 128g + 128) of
// all 64 keys (64 + 64 accumulator registers; all 256 columns would take 256). Per query tile:
//
//   warpgroup 0   S^T = K Q^T (m64n64k16, 16 k-steps), P^T = exp2(S^T scale - LSE) masked, P^T
//                 (fp32) into sP for warpgroup 1; dV[:, 0:128] += P^T dO with P^T in registers
//   warpgroup 1   dP^T = V dO^T (and dP^T - D under warpgroup 0's exponentials), then (P^T from
//                 sP) dS^T = P^T (dP^T - D) into sdS (16-bit, 128-byte swizzle);
//                 dV[:, 128:256] += P^T dO with P^T in registers
//   both          once dS^T is in: dK[:, 128g:128g + 128] += dS^T Q (dS^T from sdS as a K-major A:
//                 no fragments to load or hold) and dQ[:, 128g:128g + 128] += dS K (m64n128k16,
//                 dS^T as an MN-major A and K from shared memory)
// The LSE or D values and the mask's bounds are read while phase A's GEMM runs (NOTES v75).
//
// Phase A's two GEMMs, the same size, run one per warpgroup, so no warpgroup computes the other's
// operand a second time; the price is one hand-off each way per step (named barriers 1 and 4; 5
// marks both warpgroups' GEMMs done before dQ is staged over their operands).
//
// bwd_kernel_d256 (distca_attn_bwd_*_d256, NOTES v39): one CTA per key tile and key/value head
// walks the query tiles that see it (bwd_sm90.cuh's walk, a two-stage cp.async pipeline), and each
// warpgroup adds its staged dQ rows into the fp32 workspace by bulk reduce-adds (warpgroup_sync's 2
// and 3: its staging done). bwd_ws_kernel_d256 (distca_attn_bwd_ws_*_d256, NOTES v51, what the
// hosts launch on Hopper): persistent and warp-specialized, the reduce-adds from a thread of their
// own (1.13-1.47x the other).
#pragma once

#include "bwd.cuh"
#include "bwd_sm90.cuh"
#include "bwd_ws_sm90.cuh"  // the TMA, mbarrier and section 8 helpers

// 1 builds dQ's per-thread atomics instead of the bulk reduce-adds (to compare the two)
#ifndef DISTCA_BWD_D256_DQ_ATOMICS
#define DISTCA_BWD_D256_DQ_ATOMICS 0
#endif

namespace distca {
namespace sm90 {

// One step of the head_dim 256 backward (both kernels below): phases A, B and C on the query tile of
// `sl` at row m0 in stage (aQ, adO, cLse, cDsum), dK and dV accumulated, this warpgroup's dQ columns
// into acc_dq. Uses named barriers 1 and 4 over the 256 consumer threads.
template <typename T>
__device__ __forceinline__ void bwd_d256_step(float (&acc_dk)[64], float (&acc_dv)[64], float (&acc_dq)[64],
                                              const distca_slice_t& sl, int m0, int kb0, uint32_t aK, uint32_t aV,
                                              uint32_t aQ, uint32_t adO, T* sdS, float* sP, const float* cLse,
                                              const float* cDsum, int wg, int wrow, int quad, float scale_log2) {
  constexpr int D = 256;
  using Cfg = BwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN;
  constexpr int NS = BM / 8;      // n8 blocks of S^T per thread row pair (queries)
  constexpr int NH = D / 2 / 8;   // n8 blocks of a warpgroup's column half of dK, dV and dQ
  static_assert(NH * 4 == 64, "64 accumulators a column half");
  constexpr int kPStride = Cfg::kPStride;
  const uint32_t adS = smem_addr(sdS);
  // phase A's operands: K and Q for warpgroup 0 (S^T), V and dO for warpgroup 1 (dP^T)
  const uint32_t aA = wg == 0 ? aK : aV;
    // ---- phase A: S^T (warpgroup 0) or dP^T (warpgroup 1), 64 keys x 64 queries
    float sa[NS * 4];
#pragma unroll
    for (int i = 0; i < NS * 4; ++i) sa[i] = 0.f;
    const uint32_t aB = wg == 0 ? aQ : adO;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      Mma<T>::template ss<BM, 0, 0>(sa, desc_k_major<BN>(aA, 0, kk), desc_k_major<BM>(aB, 0, kk), kk > 0);
    }
    wgmma_commit();
    // Under the GEMM: this thread's LSE (warpgroup 0) or D (warpgroup 1) values and the mask's
    // bounds, which the element-wise work below would otherwise read after the wait
    float cv[NS * 2];
    {
      const float* c = wg == 0 ? cLse : cDsum;
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) cv[j * 2 + e] = c[j * 8 + quad * 2 + e];
      }
    }
    const int key_a = kb0 + wrow - sl.k_start;
    const bool full_tile = keys_all_visible(sl, kb0 - sl.k_start, BN, (long long)m0 + sl.diagonal);
    int first_q[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) first_q[h] = block_first_query<BM>(sl, key_a + h * 8, (long long)m0 + quad * 2 + sl.diagonal);
    wgmma_wait<0>();
    fence_regs(sa);

    // The element-wise work and the hand-offs branch on the warpgroup; every wgmma is issued outside
    // those branches (a wgmma on one path only, or one in flight where paths join, makes ptxas
    // serialize them all: NOTES v20, v24).
    uint32_t pa[BM / 16][4];  // P^T as dV's A fragments (k = queries)
    const uint32_t col = wg * (D / 2);  // this warpgroup's first column of dK, dV, dQ
    if (wg == 0) {
      // P^T = exp2(S^T scale - LSE), 0 where the key is hidden from the query (see bwd_step)
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float pr[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float x = fast_exp2(fmaf(sa[j * 4 + h * 2 + e], scale_log2, -cv[j * 2 + e]));
            pr[e] = !full_tile && j * 8 + e < first_q[h] ? 0.f : x;
          }
          *reinterpret_cast<float2*>(sP + (wrow + h * 8) * kPStride + j * 8 + quad * 2) = make_float2(pr[0], pr[1]);
          pa[j / 2][(j & 1) * 2 + h] = Elem<T>::pack(pr[0], pr[1]);
        }
      }
      bar_arrive_256<1>();  // P^T is in sP
    } else {
      // dP^T - D while warpgroup 0 computes P^T
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) sa[j * 4 + i] -= cv[j * 2 + (i & 1)];
      }
      bar_sync_256<1>();  // P^T is in sP
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float2 pr = *reinterpret_cast<const float2*>(sP + (wrow + h * 8) * kPStride + j * 8 + quad * 2);
          const int q = j * 8 + quad * 2;
          const uint32_t dd = Elem<T>::pack(pr.x * sa[j * 4 + h * 2], pr.y * sa[j * 4 + h * 2 + 1]);
          pa[j / 2][(j & 1) * 2 + h] = Elem<T>::pack(pr.x, pr.y);
          *reinterpret_cast<uint32_t*>(sdS + sw128<BN>(wrow + h * 8, q)) = dd;
        }
      }
      fence_proxy_async();  // dS^T, written by ordinary stores, is read by phase B's dK and phase C's dQ wgmma
    }
    // ---- phase B: dV[:, col:col + 128] += P^T dO, then (dS^T in) dK[:, col:col + 128] += dS^T Q
    // with dS^T from shared memory (until v75 warpgroup 0 loaded its fragments after the barrier:
    // 4-9% slower)
    fence_regs(pa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) Mma<T>::template rs<D / 2, 1>(acc_dv, pa[kk], desc_mn_major<BM>(adO, col, kk), 1);
    wgmma_commit();
    bar_sync_256<4>();  // dS^T is in sdS
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk)
      Mma<T>::template ss<D / 2, 0, 1>(acc_dk, desc_k_major<BN>(adS, 0, kk), desc_mn_major<BM>(aQ, col, kk), 1);
    wgmma_commit();

    // ---- phase C: dQ[:, col:col + 128] += dS K over the 64 keys (the caller adds it to the workspace)
    // Phase B done first: its A fragments are then free for dQ's accumulators. (Issuing phase C
    // under phase B measured the same, 0.995-1.000, and spilled before v75.)
    wgmma_wait<0>();
    fence_regs(acc_dk);
    fence_regs(acc_dv);
#pragma unroll
    for (int i = 0; i < NH * 4; ++i) acc_dq[i] = 0.f;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      Mma<T>::template ss<D / 2, 1, 1>(acc_dq, desc_mn_major<BN>(adS, 0, kk), desc_mn_major<BN>(aK, col, kk), kk > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(acc_dq);
    fence_regs(acc_dk);
    fence_regs(acc_dv);
}

template <typename T>
__device__ __forceinline__ void bwd_kernel_d256(const distca_bwd_params_t& p) {
#ifdef DISTCA_SM90_WGMMA
  constexpr int D = 256;
  using Cfg = BwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, THREADS = Cfg::kThreads;
  static_assert(BM == 64 && BN == 64, "64 x 64 tiles: one 64-column swizzle block of dS^T");
  constexpr int NH = D / 2 / 8;   // n8 blocks of a warpgroup's column half of dK, dV and dQ
  constexpr int kPStride = Cfg::kPStride;
  constexpr float kLog2e = 1.4426950408889634f;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  // K, V, stage 0's Q and dO, dS^T, P^T, stage 1's Q and dO, the LSE and D stages. dS^T and P^T sit
  // between the two stages, so that each stage's Q and dO with them are 90 KiB in one piece: where
  // the step's dQ is staged for its bulk reduce-add (kDqStage), once the step's GEMMs are done.
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + Cfg::kSmemKV;
  T* sQ0 = sV + Cfg::kSmemKV;       // [BM][D]
  T* sdO0 = sQ0 + Cfg::kSmemQ;      // [BM][D]
  T* sdS = sdO0 + Cfg::kSmemQ;      // [BN keys][BM queries]: dS^T, 128-byte swizzle
  float* sP = reinterpret_cast<float*>(sdS + Cfg::kSmemP);  // [BN keys][kPStride]: P^T, fp32
  T* sQ1 = reinterpret_cast<T*>(sP + BN * kPStride);
  T* sdO1 = sQ1 + Cfg::kSmemQ;
  float* sLse = reinterpret_cast<float*>(sdO1 + Cfg::kSmemQ);  // [2][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + 2 * BM;                                // [2][BM]
  // stage s's Q and dO (selects, not arrays: a pointer array indexed at run time lives in local memory)
  auto sQs = [&](int s) { return s ? sQ1 : sQ0; };
  auto sdOs = [&](int s) { return s ? sdO1 : sdO0; };
  // dQ's staging for stage 0 from sQ0 on, for stage 1 from sdS on (up to sdO1): never the other
  // stage's Q and dO, which the next tile's loads fill meanwhile; rows kDqStride floats apart
  // (a half-warp's fragment stores then hit 32 different banks)
  constexpr int kDqStride = D / 2 + 8;
  static_assert(2 * BM * kDqStride * 4 <= (2 * Cfg::kSmemQ + Cfg::kSmemP) * 2 + BN * kPStride * 4,
                "dQ staging fits a stage's Q and dO with dS^T and P^T");
  auto dq_stage = [&](int s) { return s ? reinterpret_cast<float*>(sdS) : reinterpret_cast<float*>(sQ0); };

  const int tid = threadIdx.x;
  const int wg = tid >> 7;  // warpgroup: dK/dV/dQ columns [128 wg, 128 wg + 128)
  const int wrow = wgmma_acc_row(tid);  // first of this thread's 2 keys
  const int quad = tid & 3;
  const BwdCtaLoads<BM, BN, D, THREADS, T> load_qdo(p, sK, sV, tid);
  const BwdTile<BN>& tile = load_qdo.tile;
  const int group = tile.group, head_kv = tile.head_kv;
  const int kb0 = tile.kb0;

  float acc_dk[NH * 4], acc_dv[NH * 4];
#pragma unroll
  for (int i = 0; i < NH * 4; ++i) acc_dk[i] = acc_dv[i] = 0.f;

  BwdCursor cur;
  bool have = bwd_begin<BM, BN, D, T>(p, cur, tile, sQ0, sdO0, sLse, sDsum, tid, load_qdo);

  const float scale_log2 = p.scale * kLog2e;
  const uint32_t aK = smem_addr(sK), aV = smem_addr(sV);
  int stage = 0;
  while (have) {
    cp_async_wait<0>();
    fence_proxy_async();  // cp.async wrote the tiles through the generic proxy; wgmma reads through the async one
    __syncthreads();
    BwdCursor next = cur;
    const bool have_next = tile.template seek_next<BM>(next);
    float next_lse = INFINITY, next_dsum = 0.f;
    if (have_next)
      bwd_issue_tile<BM, D, T>(p, next, head_kv, group, sQs(stage ^ 1), sdOs(stage ^ 1), 0, next_lse, next_dsum, tid,
                               load_qdo);
    cp_async_commit();

    const uint32_t aQ = smem_addr(sQs(stage)), adO = smem_addr(sdOs(stage));
    const float* cLse = sLse + stage * BM;
    const float* cDsum = sDsum + stage * BM;
    const distca_slice_t& sl = cur.sl;
    const int m0 = cur.mb * BM;

    float acc_dq[NH * 4];
    bwd_d256_step<T>(acc_dk, acc_dv, acc_dq, sl, m0, kb0, aK, aV, aQ, adO, sdS, sP, cLse, cDsum, wg, wrow, quad,
                     scale_log2);
#if DISTCA_BWD_D256_DQ_ATOMICS
    bwd_dq_atomics<D>(acc_dq, p, sl.q_start + m0, head_kv * group + cur.group_head, min(BM, sl.q_len - m0), wg, wrow,
                      quad);
#else
    // dQ through shared memory and one bulk reduce-add per row (512 bytes; per-thread atomics of the
    // same tile measured 2-4% slower: NOTES v39)
    bar_sync_256<5>();  // both warpgroups' GEMMs of the step are done: its Q, dO, dS^T and P^T are free
    float* stg = dq_stage(stage) + wg * BM * kDqStride;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int j = 0; j < NH; ++j) {
        *reinterpret_cast<float2*>(stg + (wrow + h * 8) * kDqStride + j * 8 + quad * 2) =
            make_float2(acc_dq[j * 4 + h * 2], acc_dq[j * 4 + h * 2 + 1]);
      }
    }
    fence_proxy_async();  // the bulk copy reads the staged rows through the async proxy
    warpgroup_sync(wg);
    {
      const int r = tid & 127;
      if (r < min(BM, sl.q_len - m0)) {
        const long long row = (long long)sl.q_start + m0 + r;
        float* dst = reinterpret_cast<float*>(p.dq_accum) + (row * p.heads_q + head_kv * group + cur.group_head) * D +
                     wg * (D / 2);
        bulk_reduce_add_f32(dst, smem_addr(stg + r * kDqStride), D / 2 * 4);
        bulk_commit();
      }
    }
#endif
    // The next tile's LSE/D go to the other stage (its readers are past the next iteration's barrier).
    if (have_next && tid < BM) {
      sLse[(stage ^ 1) * BM + tid] = next_lse;
      sDsum[(stage ^ 1) * BM + tid] = next_dsum;
    }

#if !DISTCA_BWD_D256_DQ_ATOMICS
    bulk_wait_read<0>();  // the staged dQ is read before the next step's loads may overwrite it
#endif

    cur = next;
    have = have_next;
    stage ^= 1;
  }
  cp_async_wait<0>();
#if !DISTCA_BWD_D256_DQ_ATOMICS
  bulk_wait<0>();
#endif

  bwd_store_dkdv<T, D, BN, D / 2>(acc_dk, acc_dv, p, tile, wg, wrow, quad);
#else
  __trap();  // only the sm_90a image has this kernel's body; hosts elsewhere never launch it
#endif
}

// The warp-specialized head_dim 256 backward (distca_attn_bwd_ws_*_d256; NOTES v51): the step of
// bwd_d256_step on two consumer warpgroups, whose dQ a thread of a third warpgroup adds into the
// workspace by TMA reduce-adds while they go on. The bulk copy unit takes each reduce-add's bytes
// only as fast as the L2 accepts them (~2 TB/s over the GPU, 64 KiB a step here), so from a
// consumer thread the reduce-adds held the step 1.4x as long as none (v51); and since a step's dQ is
// staged over its stage's Q and dO, that stage loads again only once they have read it, which the
// producer's TMA loads wait for without holding anyone else. Warpgroup 2:
//
//   warp 8     the producer: claims key tiles (persistent, the tile counter of section 7), walks
//              the query tiles that see each, and per step loads Q and dO by TMA into a stage
//              (once its previous dQ has been read), LSE and D into sLse/sDsum, and writes the
//              step's record
//   warps 10, 11  (section 8) one per stage: the step's dQ tile zeroed by its first visitor, or
//              waited for, before the warp arrives on the stage's claimed barrier, which the reducer
//              waits for before the step's reduce-adds (done by the producer itself, the claims'
//              round trips and zeroes held the long sequences to 0.61 of this: NOTES v51; on the
//              stage's full barrier, which the consumers wait for, 0.94: v60)
//   warp 9     lane 0, the reducer: each step's staged dQ into the workspace (eight 32-column
//              boxes), then the stage back to the producer
//
// The consumers take everything from the records (no walk state in their 232 registers), load a key
// tile's K and V themselves (cp.async: the K/V maps' boxes are 128 rows) and store its dK/dV after
// its last step, staged in sK/sV (bwd_store_dkdv_staged; NOTES v76).
struct BwdWsD256Config {
  using Step = BwdSm90Config<256>;
  static constexpr int D = 256, BM = Step::BM, BN = Step::BN;
  static constexpr int kThreads = 384;
  // K, V, 2 stages of (Q, dO), dS^T, P^T (fp32), 2 stages of (LSE, D), 10 mbarriers, 2 records
  // and 4 claim slots (512 bytes), plus 1 KiB of alignment
  static constexpr int kSmemBytes = (2 * Step::kSmemKV + 4 * Step::kSmemQ + Step::kSmemP) * 2 + Step::kSmemPf32 +
                                    4 * BM * 4 + 512 + 1024;
};

// A step of the warp-specialized d256 backward as the producer hands it to the consumers and the
// reducer (64 bytes).
struct BwdD256Step {
  enum : int { kFirst = 1, kLast = 2, kNoStep = 4, kEnd = 8 };
  distca_slice_t sl;
  int m0;      // the query tile's first row in the slice
  int hq;      // query head
  int kb0;     // the key tile's first row, its key/value head and rows in its segment
  int head_kv;
  int k_rows;
  int flags;   // kFirst: the key tile's first step; kLast: its last; kNoStep: a key tile no query
               // tile sees (kFirst | kLast | kNoStep, no load); kEnd: no more tiles
  int pad[2];
};

// kSplits: distca_attn_bwd_ws_kv_*_d256 (distca_attn.h section 9): the work list may hold group
// splits, and each key tile's dK and dV are added into dkv_accum (bwd_add_dkdv_staged) instead of
// written.
template <typename T, bool kSplits = false>
__device__ __forceinline__ void bwd_ws_kernel_d256(const distca_bwd_ws_params_t& P) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = BwdWsD256Config;
  using Step = Cfg::Step;
  constexpr int D = 256, BM = Cfg::BM, BN = Cfg::BN;
  static_assert(BM == 64 && BN == 64, "64 x 64 tiles");
  constexpr int kConsumers = 256;
  constexpr float kLog2e = 1.4426950408889634f;
  const distca_bwd_params_t& p = P.base;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  // K, V, stage 0's Q and dO, stage 1's, dS^T, P^T, the LSE and D stages, the mbarriers, the
  // records. A step's dQ is staged over its stage's Q and dO (64 KiB: eight boxes of 64 rows x 32
  // columns, 128-byte swizzle) once both consumer warpgroups' GEMMs of the step are done.
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + Step::kSmemKV;
  T* sQ0 = sV + Step::kSmemKV;  // [BM][D]; sdO0 after it, then stage 1's
  constexpr int kStageElems = 2 * Step::kSmemQ;
  T* sdS = sQ0 + 2 * kStageElems;  // [BN keys][BM queries]: dS^T
  float* sP = reinterpret_cast<float*>(sdS + Step::kSmemP);  // [BN keys][kPStride]: P^T, fp32
  float* sLse = sP + BN * Step::kPStride;  // [2][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + 2 * BM;           // [2][BM]
  uint64_t* bars = reinterpret_cast<uint64_t*>(sDsum + 2 * BM);
  BwdD256Step* recs = reinterpret_cast<BwdD256Step*>(bars + 16);  // [2]
  // section 8: the producer's record it for the claiming warp of stage it % 2, in slot it % 4
  int4* claim_slots = reinterpret_cast<int4*>(recs + 2);  // {head, first row, rows, kind}
  auto bar_claim_go = [&](int slot) { return smem_addr(bars + 6 + slot); };
  static_assert(sizeof(BwdD256Step) == 64, "records of 64 bytes");
  // stage s: loaded, its LSE/D and record written (the producer's 32 lanes and the TMA bytes); its
  // dQ staged (the 256 consumer threads); its staged dQ read by the reduce-adds (the reducer)
  auto bar_full = [&](int s) { return smem_addr(bars + s); };
  auto bar_staged = [&](int s) { return smem_addr(bars + 2 + s); };
  auto bar_free = [&](int s) { return smem_addr(bars + 4 + s); };
  // (section 8) stage s's step claimed: its dQ rows zeroed by this CTA or by their first visitor (the
  // claiming warp's lanes); the reducer's reduce-adds wait for it, the consumers do not (NOTES v60)
  auto bar_claimed = [&](int s) { return smem_addr(bars + 10 + s); };
  const bool claiming = p.dq_claims != 0;
  auto sQs = [&](int s) { return sQ0 + s * kStageElems; };
  auto sdOs = [&](int s) { return sQ0 + s * kStageElems + Step::kSmemQ; };
  auto dq_stage = [&](int s) { return reinterpret_cast<float*>(sQs(s)); };
  static_assert(BM * D * 4 == kStageElems * 2, "a step's fp32 dQ is a stage's Q and dO");

  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < 2; ++s) {
      mbar_init(bar_full(s), 32);  // the producer's lanes
      mbar_init(bar_staged(s), kConsumers);
      mbar_init(bar_free(s), 1);
      mbar_init(bar_claimed(s), 32);
    }
    for (int slot = 0; slot < 4; ++slot) mbar_init(bar_claim_go(slot), 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (tid >= kConsumers) {
    // 40 registers here and 232 in the consumers (the CTA's 168 x 384 exactly): with 24 and 240 the
    // producer's walk spilled, and every backward ran 1.5-3.7% slower (NOTES v76); 56 and 224 lost 1%
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    const int warp = (tid - kConsumers) >> 5, lane = tid & 31;
    if (warp == 0) {
      // ---- producer
      const int tiles = p.num_work * p.heads_kv;
      int* counter = reinterpret_cast<int*>(P.tile_counter);
      const uint32_t* claims = reinterpret_cast<const uint32_t*>(p.dq_claims);
      int it = 0;
      // (section 8) record it's query tile to the claiming warp of its stage (kind 1: a step, 0: no
      // step, -1: the end), before the stage is free: the claim's round trips and zeroes overlap the
      // wait. Slot it % 4 was last read for record it - 4, whose stage the consumers have taken since.
      auto hand_to_claimer = [&](int rec, int hq, int q_row, int rows, int kind) {
        if (claims != nullptr && lane == 0) {
          claim_slots[rec & 3] = make_int4(hq, q_row, rows, kind);
          mbar_arrive(bar_claim_go(rec & 3));
        }
      };
      // stage it % 2 once the reduce-adds of the step two before have read it
      auto next_stage = [&]() {
        const int s = it & 1;
        if (it >= 2) mbar_wait(bar_free(s), ((it >> 1) - 1) & 1);
        return s;
      };
      for (int t = blockIdx.x; t < tiles; t = __shfl_sync(0xffffffffu, lane == 0 ? next_tile(counter, t) : 0, 0)) {
        const BwdTile<BN, kSplits, kBwdChunkTiles> tile(p, t, P.band_end);  // (the chunked walk, section 10: MHA's walk is the same)
        const int group = tile.group;
        auto cur = tile.template start<BM>();
        bool have = tile.template seek<BM>(cur);
        if (!have) {  // dK = dV = 0
          hand_to_claimer(it, 0, 0, 0, 0);
          const int s = next_stage();
          if (lane == 0) {
            BwdD256Step& r = recs[s];
            r.kb0 = tile.kb0;
            r.head_kv = tile.head_kv;
            r.k_rows = tile.k_rows;
            r.flags = BwdD256Step::kFirst | BwdD256Step::kLast | BwdD256Step::kNoStep;
          }
          mbar_arrive(bar_full(s));
          ++it;
        }
        for (int first = 1; have; first = 0, ++it) {
          const int hq = tile.head_kv * group + cur.group_head;
          const int m0 = cur.mb * BM;
          const int q_row = cur.sl.q_start + m0;
          const int rows = min(BM, cur.sl.q_len - m0);
          // (DISTCA_BWD_QDO_PREFETCH_D) the tile's Q and dO into L2 while the stage drains
          if (D == DISTCA_BWD_QDO_PREFETCH_D && lane == 0) tma_prefetch_q_do<D>(P, hq, q_row);
          float lse[BM / 32], dsum[BM / 32];
          bwd_lse_dsum_lanes<BM>(p, hq, q_row, rows, lane, lse, dsum);
          hand_to_claimer(it, hq, q_row, rows, 1);
          const int s = next_stage();
          if (lane == 0) {
            mbar_add_tx(bar_full(s), 2 * BM * D * 2);
#pragma unroll
            for (int h = 0; h < D / 64; ++h) {
              tma_load_3d(smem_addr(sQs(s) + h * BM * 64), P.tmap_q, bar_full(s), h * 64, hq, q_row);
              tma_load_3d(smem_addr(sdOs(s) + h * BM * 64), P.tmap_do, bar_full(s), h * 64, hq, q_row);
            }
          }
#pragma unroll
          for (int k = 0; k < BM / 32; ++k) {
            sLse[s * BM + lane + 32 * k] = lse[k];
            sDsum[s * BM + lane + 32 * k] = dsum[k];
          }
          auto next = cur;
          const bool have_next = tile.template seek_next<BM>(next);
          if (lane == 0) {
            BwdD256Step& r = recs[s];
            r.sl = cur.sl;
            r.m0 = m0;
            r.hq = hq;
            r.kb0 = tile.kb0;
            r.head_kv = tile.head_kv;
            r.k_rows = tile.k_rows;
            r.flags = (first ? BwdD256Step::kFirst : 0) | (have_next ? 0 : BwdD256Step::kLast);
          }
          mbar_arrive(bar_full(s));  // release: the LSE/D, the record and the zeroes (or the wait for them)
          cur = next;
          have = have_next;
        }
      }
      // the end, to both claiming warps (the other one's arrival on the stage after is never waited for)
      hand_to_claimer(it, 0, 0, 0, -1);
      hand_to_claimer(it + 1, 0, 0, 0, -1);
      const int s = next_stage();
      if (lane == 0) recs[s].flags = BwdD256Step::kEnd;
      mbar_arrive(bar_full(s));
    } else if (warp >= 2 && claiming) {
      // ---- claiming warps (section 8), warp 2 + s for stage s: each step's dQ tile zeroed, or
      // waited for until its first visitor has zeroed it, before the warp's lanes arrive on the
      // stage's claimed barrier, which only the reducer waits for: the claim's round trips and
      // zeroes run under the step (on the stage's full barrier, which the consumers wait for, they
      // cost 4-8%: NOTES v60)
      uint32_t* claims = reinterpret_cast<uint32_t*>(p.dq_claims);
      for (int it = warp - 2;; it += 2) {
        mbar_wait(bar_claim_go(it & 3), (it >> 2) & 1);
        const int4 c = claim_slots[it & 3];
        if (c.w > 0) {
          uint32_t* claim = claims + (long long)c.x * p.total_q + c.y;
          uint32_t claimed = 0;
          if (lane == 0) claimed = atomicAdd(claim, 1u);
          dq_tile_zero_or_wait<D>(p, claim, __shfl_sync(0xffffffffu, claimed, 0), c.x, c.y, c.z, lane);
        }
        // the arrival counts for record it once the reducer is done with record it - 2 of the stage
        // (it waited for that record's phase before it freed the stage)
        if (it >= 2) mbar_wait(bar_free(it & 1), ((it >> 1) - 1) & 1);
        mbar_arrive(bar_claimed(it & 1));  // release: the zeroes (or the wait for them)
        if (c.w < 0) break;
      }
    } else if (warp == 1 && lane == 0) {
      // ---- reducer
      for (int it = 0;; ++it) {
        const int s = it & 1;
        mbar_wait(bar_staged(s), (it >> 1) & 1);
        const BwdD256Step& r = recs[s];
        const int flags = r.flags;
        if (flags & BwdD256Step::kEnd) break;
        if (claiming) mbar_wait(bar_claimed(s), (it >> 1) & 1);  // acquire: the zeroes
        if (!(flags & BwdD256Step::kNoStep)) {
          // eight boxes of 64 rows x 32 columns; rows past the slice hold exact zeros (their P and
          // dS are 0), so adding them to whatever rows follow changes nothing
          fence_proxy_async();  // the consumers' ordinary stores of the staged dQ, acquired above, before the TMA's reads
          dq_tile_reduce_add<BM, D / 32>(P.tmap_dq_accum, dq_stage(s), 0, r.hq, r.sl.q_start + r.m0);
          bulk_wait_read<0>();
        }
        mbar_arrive(bar_free(s));
      }
      bulk_wait<0>();
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int wg = tid >> 7;  // warpgroup: dK/dV/dQ columns [128 wg, 128 wg + 128)
  const int wrow = wgmma_acc_row(tid);  // first of this thread's 2 keys
  const int quad = tid & 3;
  const float scale_log2 = p.scale * kLog2e;
  const uint32_t aK = smem_addr(sK), aV = smem_addr(sV);
  constexpr int NH = D / 2 / 8;
  float acc_dk[NH * 4], acc_dv[NH * 4];
  for (int it = 0;; ++it) {
    const int s = it & 1;
    mbar_wait(bar_full(s), (it >> 1) & 1);
    const BwdD256Step& r = recs[s];
    const int flags = r.flags;
    if (flags & BwdD256Step::kEnd) {
      mbar_arrive(bar_staged(s));
      break;
    }
    if (flags & BwdD256Step::kFirst) {
#pragma unroll
      for (int i = 0; i < NH * 4; ++i) acc_dk[i] = acc_dv[i] = 0.f;
      if (!(flags & BwdD256Step::kNoStep)) {
        // the key tile's K and V (the previous tile's GEMMs are done: its last step passed barrier 5)
        // (BwdTile::load_kv's loads, written out on the record's fields: through a BwdTile copy
        // ptxas schedules the kernel otherwise, not measured)
        const long long kv_stride = (long long)p.heads_kv * D;
        const long long first = ((long long)r.kb0 * p.heads_kv + r.head_kv) * D;
        const T* k = reinterpret_cast<const T*>(p.k);
        if (it > 0) bar_sync_256<6>();  // every warp has read its staged dK/dV of the previous tile out of sK/sV
        load_tile<Sw128Layout, BN, D, kConsumers>(sK, k + first, kv_stride, r.k_rows, k, tid);
        load_tile<Sw128Layout, BN, D, kConsumers>(sV, reinterpret_cast<const T*>(p.v) + first, kv_stride, r.k_rows, k, tid);
        cp_async_commit();
        cp_async_wait<0>();
        fence_proxy_async();  // cp.async wrote the tiles through the generic proxy; wgmma reads through the async one
        bar_sync_256<6>();
      }
    }
    if (!(flags & BwdD256Step::kNoStep)) {
      float acc_dq[NH * 4];
      bwd_d256_step<T>(acc_dk, acc_dv, acc_dq, r.sl, r.m0, r.kb0, aK, aV, smem_addr(sQs(s)), smem_addr(sdOs(s)), sdS,
                       sP, sLse + s * BM, sDsum + s * BM, wg, wrow, quad, scale_log2);
      bar_sync_256<5>();  // both warpgroups' GEMMs of the step are done: its Q and dO are free
      float* stg = dq_stage(s);
      stage_dq_fragments<D, BM, NH>(stg, acc_dq, wrow, quad, wg * (D / 2));
      // (the TMA reads the staged dQ through the async proxy: the reducer fences after its wait; a
      // fence here waited for the stores to drain, 0.5-2% of the step: NOTES v77)
    }
    if (flags & BwdD256Step::kLast) {
      // through sK (warpgroup 0's columns) and sV (1's): the tile's GEMMs are done (its last step
      // passed barrier 5), and each warp touches only its own rows there; the next tile's K/V load
      // waits for all of them (barrier 6). From registers (4-byte stores) causal 1K ran 10% slower (v76).
      if constexpr (kSplits) {  // a piece no query tile sees adds nothing (the host zeroed the sums)
        if (!(flags & BwdD256Step::kNoStep))
          bwd_add_dkdv_staged<D, D / 2>(acc_dk, acc_dv, p, reinterpret_cast<float*>(P.dkv_accum), r.kb0, r.head_kv,
                                        r.k_rows, wg, reinterpret_cast<float*>(wg == 0 ? sK : sV), tid & 127);
      } else {
        bwd_store_dkdv_staged<T, D, D / 2>(acc_dk, acc_dv, p, r.kb0, r.head_kv, r.k_rows, wg,
                                           wg == 0 ? sK : sV, tid & 127);
      }
    }
    mbar_arrive(bar_staged(s));
  }
#else
  __trap();  // only the sm_90a image has this kernel's body; hosts elsewhere never launch it
#endif
}

}  // namespace sm90
}  // namespace distca
