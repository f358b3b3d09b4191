// Backward on Hopper with warp specialization (head_dim 64 and 128, sm_90a): the work decomposition and
// the per-tile arithmetic (bwd_step) of bwd_sm90.cuh, with the loads moved to a producer warp:
//
//   warp 0           loads the CTA's K and V tile once through TMA, then walks the same query tiles
//                    as the consumers and, per tile, waits for a stage to be empty, loads Q and dO
//                    through TMA (two 64-column halves each) and LSE/D with ordinary loads, and
//                    arrives on the stage's full barrier
//   warpgroups 1, 2  keys [0, 64) and [64, 128) of the key tile: wait for a stage, bwd_step, release it
//
// Tensor maps (distca_bwd_ws_params_t, distca_attn.h section 7): K and V with boxes of 128 rows, Q and
// dO with boxes of 64 rows (the query tile).
#pragma once

#include "bwd_sm90.cuh"
#include "fwd_ws_sm90.cuh"

namespace distca {
namespace sm90 {

template <int D>
struct BwdWsConfig {
  static constexpr int BM = 64, BN = 128, kStages = 2;
  static constexpr int kThreads = 384;  // a producer warpgroup (one warp works) and two consumer warpgroups
  static constexpr int kSmemKV = BN * D;
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemP = BN * BM;
  // K, V, stages x (Q, dO), dS^T, stages x (LSE, D), the mbarriers, plus 1 KiB of alignment
  static constexpr int kSmemBytes = (2 * kSmemKV + 2 * kStages * kSmemQ + kSmemP) * 2 + 2 * kStages * BM * 4 + 64 + 1024;
};

// mbarrier.expect_tx without the arrive: the producer's lanes arrive after their LSE/D stores.
__device__ __forceinline__ void mbar_add_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

template <typename T, int D>
__device__ __forceinline__ void bwd_ws_kernel(const distca_bwd_ws_params_t& P) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = BwdWsConfig<D>;
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
  float* sLse = reinterpret_cast<float*>(sdS + Cfg::kSmemP);  // [S][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + S * BM;                               // [S][BM]
  uint64_t* bars = reinterpret_cast<uint64_t*>(sDsum + S * BM);
  const uint32_t bar_kv = smem_addr(bars);
  auto bar_full = [&](int s) { return smem_addr(bars + 1 + s); };
  auto bar_empty = [&](int s) { return smem_addr(bars + 1 + S + s); };

  const int tid = threadIdx.x;
  const BwdTile<BN> tile(p);
  const int group = tile.group, head_kv = tile.head_kv;
  if (tid == 0) {
    mbar_init(bar_kv, 1);
    for (int s = 0; s < S; ++s) {
      mbar_init(bar_full(s), 32);    // the producer warp's lanes, after their LSE/D stores
      mbar_init(bar_empty(s), 256);  // every consumer thread, once done with the stage
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (tid < 128) {
    // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (tid < 32) {
      const int lane = tid;
      if (lane == 0) {
        mbar_expect_tx(bar_kv, 2 * BN * D * 2);
#pragma unroll
        for (int h = 0; h < D / 64; ++h) {
          tma_load_3d(smem_addr(sK + h * BN * 64), P.tmap_k, bar_kv, h * 64, head_kv, tile.kb0);
          tma_load_3d(smem_addr(sV + h * BN * 64), P.tmap_v, bar_kv, h * 64, head_kv, tile.kb0);
        }
      }
      BwdCursor cur = tile.start();
      int it = 0;
      for (bool have = tile.template seek<BM>(cur); have; cur.advance(), have = tile.template seek<BM>(cur), ++it) {
        const int s = it % S;
        if (it >= S) mbar_wait(bar_empty(s), ((it / S) - 1) & 1);
        const int hq = head_kv * group + cur.group_head;
        const int m0 = cur.mb * BM;
        const int q_row = cur.sl.q_start + m0;
        if (lane == 0) {
          mbar_add_tx(bar_full(s), 2 * BM * D * 2);
#pragma unroll
          for (int h = 0; h < D / 64; ++h) {
            tma_load_3d(smem_addr(sQ + s * Cfg::kSmemQ + h * BM * 64), P.tmap_q, bar_full(s), h * 64, hq, q_row);
            tma_load_3d(smem_addr(sdO + s * Cfg::kSmemQ + h * BM * 64), P.tmap_do, bar_full(s), h * 64, hq, q_row);
          }
        }
        const int rows = min(BM, cur.sl.q_len - m0);
#pragma unroll
        for (int r = lane; r < BM; r += 32) {
          float lse = INFINITY, dsum = 0.f;  // rows past the slice: P = 0
          if (r < rows) {
            const long long idx = (long long)hq * p.total_q + q_row + r;
            const float l = reinterpret_cast<const float*>(p.lse)[idx];
            lse = l == -INFINITY ? INFINITY : l * kLog2e;
            dsum = reinterpret_cast<const float*>(p.dsum)[idx];
          }
          sLse[s * BM + r] = lse;
          sDsum[s * BM + r] = dsum;
        }
        mbar_arrive(bar_full(s));  // release: this lane's LSE/D stores are visible to the waiters
      }
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
  const int ctid = tid - 128;
  const int wg = ctid >> 7;  // keys [64 wg, 64 wg + 64)
  const int wrow = ((ctid >> 5) & 3) * 16 + ((ctid & 31) >> 2);
  const int quad = ctid & 3;
  const float scale_log2 = p.scale * kLog2e;
  float acc_dk[NKV * 4], acc_dv[NKV * 4];
#pragma unroll
  for (int i = 0; i < NKV * 4; ++i) acc_dk[i] = acc_dv[i] = 0.f;
  const uint32_t aK = smem_addr(sK), aV = smem_addr(sV);
  auto consumers_sync = [] { asm volatile("bar.sync 1, 256;\n" ::: "memory"); };

  BwdCursor cur = tile.start();
  bool have = tile.template seek<BM>(cur);
  mbar_wait(bar_kv, 0);  // also where no query tile sees the key tile: the copies must land before exit
  for (int it = 0; have; cur.advance(), have = tile.template seek<BM>(cur), ++it) {
    const int s = it % S;
    mbar_wait(bar_full(s), (it / S) & 1);
    consumers_sync();  // both warpgroups are past the previous tile's phase C: dS^T may be overwritten
    bwd_step<T, D>(acc_dk, acc_dv, p, cur, head_kv, group, tile.kb0, aK, aV, smem_addr(sQ + s * Cfg::kSmemQ),
                   smem_addr(sdO + s * Cfg::kSmemQ), sdS, sLse + s * BM, sDsum + s * BM, wg, wrow, quad, scale_log2,
                   consumers_sync);
    mbar_arrive(bar_empty(s));  // bwd_step waited for all its GEMMs: this thread is done with the stage
  }

  bwd_store_dkdv<T, D>(acc_dk, acc_dv, p, tile, wg, wrow, quad);
#else
  __trap();
#endif
}

}  // namespace sm90
}  // namespace distca
