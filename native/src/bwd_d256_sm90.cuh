// Backward of head_dim 256 on Hopper (sm_90a) with warpgroup MMA. The walk of bwd_sm90.cuh (one CTA
// per key tile and key/value head, the query tiles that see it walked through a two-stage cp.async
// pipeline), with dQ added into the fp32 workspace by bulk reduce-adds of rows staged in shared
// memory (2-4% faster than per-thread atomics; without either this kernel runs 1.4-1.75x faster:
// NOTES v39, v41), tiles of BM = 64 queries and BN = 64
// keys, and the two warpgroups splitting the head dim instead of the keys: warpgroup g holds the dK
// and dV columns [128g, 128g + 128) of all 64 keys (64 + 64 accumulator registers; all 256 columns
// would take 256). Per query tile:
//
//   warpgroup 0   S^T = K Q^T (m64n64k16, 16 k-steps), P^T = exp2(S^T scale - LSE) masked, P^T
//                 (fp32) into sP for warpgroup 1; dV[:, 0:128] += P^T dO with P^T in registers;
//                 then, once dS^T is in, dK[:, 0:128] += dS^T Q with dS^T read from sdS
//   warpgroup 1   dP^T = V dO^T, then (P^T from sP) dS^T = P^T (dP^T - D) into sdS (16-bit, the
//                 swizzled layout phase C reads); dV[:, 128:256] and dK[:, 128:256] from registers
//   both          dQ[:, 128g:128g + 128] += dS K (m64n128k16, dS^T and K from shared memory)
//
// Phase A's two GEMMs, the same size, run one per warpgroup, so no warpgroup computes the other's
// operand a second time; the price is one hand-off each way per step (named barriers 1 and 4; 5
// marks both warpgroups' GEMMs done before dQ is staged over their operands, and warpgroup_sync's
// 2 and 3 each warpgroup's staging done before its bulk reduce-adds).
#pragma once

#include "bwd.cuh"
#include "bwd_sm90.cuh"
#include "fwd_ws_sm90.cuh"  // the bulk-group helpers

// 1 builds dQ's per-thread atomics instead of the bulk reduce-adds (to compare the two)
#ifndef DISTCA_BWD_D256_DQ_ATOMICS
#define DISTCA_BWD_D256_DQ_ATOMICS 0
#endif

namespace distca {
namespace sm90 {

// Adds `bytes` of fp32 from shared memory at src into global memory at dst (16-byte aligned, bytes
// a multiple of 16), as one bulk-async group member.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}

template <typename T>
__device__ __forceinline__ void bwd_kernel_d256(const distca_bwd_params_t& p) {
#ifdef DISTCA_SM90_WGMMA
  constexpr int D = 256;
  using Cfg = BwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, THREADS = Cfg::kThreads;
  static_assert(BM == 64 && BN == 64, "64 x 64 tiles: one 64-column swizzle block of dS^T");
  constexpr int NS = BM / 8;      // n8 blocks of S^T per thread row pair (queries)
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
  const uint32_t aK = smem_addr(sK), aV = smem_addr(sV), adS = smem_addr(sdS);
  // phase A's operands: K and Q for warpgroup 0 (S^T), V and dO for warpgroup 1 (dP^T)
  const uint32_t aA = wg == 0 ? aK : aV;
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
    wgmma_wait<0>();
    fence_regs(sa);

    // The element-wise work and the hand-offs branch on the warpgroup; every wgmma is issued outside
    // those branches (a wgmma on one path only, or one in flight where paths join, makes ptxas
    // serialize them all: NOTES v20, v24).
    uint32_t pa[BM / 16][4], dsa[BM / 16][4];  // P^T and dS^T as phase B's A fragments (k = queries)
    const uint32_t col = wg * (D / 2);         // this warpgroup's first column of dK, dV, dQ
    if (wg == 0) {
      // P^T = exp2(S^T scale - LSE), 0 where the key is hidden from the query (see bwd_step)
      const int key_a = kb0 + wrow - sl.k_start;
      const bool full_tile = keys_all_visible(sl, kb0 - sl.k_start, BN, (long long)m0 + sl.diagonal);
      int first_q[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) first_q[h] = block_first_query<BM>(sl, key_a + h * 8, (long long)m0 + quad * 2 + sl.diagonal);
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float pr[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float x = fast_exp2(fmaf(sa[j * 4 + h * 2 + e], scale_log2, -cLse[j * 8 + quad * 2 + e]));
            pr[e] = !full_tile && j * 8 + e < first_q[h] ? 0.f : x;
          }
          *reinterpret_cast<float2*>(sP + (wrow + h * 8) * kPStride + j * 8 + quad * 2) = make_float2(pr[0], pr[1]);
          pa[j / 2][(j & 1) * 2 + h] = Elem<T>::pack(pr[0], pr[1]);
        }
      }
      bar_arrive_256<1>();  // P^T is in sP
    } else {
      bar_sync_256<1>();  // P^T is in sP
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float2 pr = *reinterpret_cast<const float2*>(sP + (wrow + h * 8) * kPStride + j * 8 + quad * 2);
          const int q = j * 8 + quad * 2;
          const uint32_t dd = Elem<T>::pack(pr.x * (sa[j * 4 + h * 2] - cDsum[q]), pr.y * (sa[j * 4 + h * 2 + 1] - cDsum[q + 1]));
          pa[j / 2][(j & 1) * 2 + h] = Elem<T>::pack(pr.x, pr.y);
          dsa[j / 2][(j & 1) * 2 + h] = dd;
          *reinterpret_cast<uint32_t*>(sdS + sw128<BN>(wrow + h * 8, q)) = dd;
        }
      }
      fence_proxy_async();  // dS^T, written by ordinary stores, is read by phase C's wgmma
    }
    // ---- phase B: dV[:, col:col + 128] += P^T dO, then (dS^T in) dK[:, col:col + 128] += dS^T Q
    fence_regs(pa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) Mma<T>::template rs<D / 2, 1>(acc_dv, pa[kk], desc_mn_major<BM>(adO, col, kk), 1);
    wgmma_commit();
    bar_sync_256<4>();  // dS^T is in sdS
    if (wg == 0) {
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          dsa[j / 2][(j & 1) * 2 + h] = *reinterpret_cast<const uint32_t*>(sdS + sw128<BN>(wrow + h * 8, j * 8 + quad * 2));
        }
      }
    }
    fence_regs(dsa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) Mma<T>::template rs<D / 2, 1>(acc_dk, dsa[kk], desc_mn_major<BM>(aQ, col, kk), 1);
    wgmma_commit();

    // ---- phase C: dQ[:, col:col + 128] += dS K over the 64 keys, atomics into the workspace
    // Phase B done first: its A fragments (32 registers) are then free for dQ's accumulators.
    // Issuing phase C under phase B measured the same (0.995-1.000) and spilled.
    wgmma_wait<0>();
    fence_regs(acc_dk);
    fence_regs(acc_dv);
    float acc_dq[NH * 4];
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
        float* dst = reinterpret_cast<float*>(p.dq_accum) + (row * p.heads_q + head_kv * group + cur.group_head) * D + col;
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

}  // namespace sm90
}  // namespace distca
