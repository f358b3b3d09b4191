// Forward on Hopper (sm_90a): the work decomposition of fwd.cuh (one CTA per query tile of a slice and
// query head, key blocks walked from the diagonal down through a two-stage cp.async pipeline, online
// softmax in the exp2 domain), with the GEMMs on warpgroup MMA:
//
//   2 warpgroups; warpgroup g owns query rows [64g, 64g + 64) of the 128-row tile.
//   S = Q K^T   m64n{BN}k16, A (Q) and B (K) from shared memory, both K-major
//   O += P V    m64n{D}k16, A = P straight from the S accumulators in registers, B (V) N-major
//
// Shared tiles use the canonical 128-byte swizzle of bwd_sm90.cuh.
#pragma once

#include "bwd_sm90.cuh"
#include "fwd.cuh"

namespace distca {
namespace sm90 {

// Pairwise tree reduction of t[0..N) into t[0], with compile-time indices only (a loop whose bound
// changes per level left the array in local memory at N = 16). An odd level first folds its last
// element into t[0] (N = 10: the 80-key blocks of head_dim 256).
template <int N, typename Op>
__device__ __forceinline__ void tree_reduce(float (&t)[N], Op op) {
  if constexpr (N >= 2) {
    if constexpr (N % 2 == 1) t[0] = op(t[0], t[N - 1]);
#pragma unroll
    for (int j = 0; j < N / 2; ++j) t[j] = op(t[j], t[j + N / 2]);
    tree_reduce<N / 2>(reinterpret_cast<float(&)[N / 2]>(t), op);
  }
}

#ifndef DISTCA_FWD_SM90_CHUNKS
#define DISTCA_FWD_SM90_CHUNKS 4
#endif

template <int D>
struct FwdSm90Config {
  // head_dim 256: 64-key blocks (Q's 64 KiB and four 32 KiB K/V stages fit 227 KiB; O's 128
  // accumulator registers leave room for S and P of 64 keys, not 128)
  static constexpr int BM = 128, BN = D == 256 ? 64 : 128;
  static constexpr int kBlockM = BM, kBlockN = BN;  // for the host (distca_attn_info_t)
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSmemQ = BM * D;  // elements
  static constexpr int kSmemKV = BN * D;
  // Q, 2 stages of K, 2 stages of V, plus 1 KiB to start the tiles on a 1024-byte boundary
  static constexpr int kSmemBytes = (kSmemQ + 4 * kSmemKV) * 2 + 1024;
};

// The mask of a key block whose S (this warpgroup's 64 rows x BN keys from n0) is complete in s,
// where the block is not visible to every row of the tile, and the online softmax's new row maxima
// for rows wrow and wrow + 8: alpha, the factor that O and the row sums take, and m_scaled, the
// scaled maximum that P = exp2(S * scale_log2 - m_scaled) subtracts.
template <int BN>
__device__ __forceinline__ void fwd_mask_and_max(float (&s)[BN / 8 * 4], float (&row_max)[2], float (&alpha)[2],
                                                 float (&m_scaled)[2], int n0, const distca_slice_t& sl,
                                                 long long row_limit0, long long tile_min_limit, int quad,
                                                 float scale_log2) {
  constexpr int NS = BN / 8;
  __builtin_assume(n0 >= 0);  // key blocks start inside the slice: no lower-bound test in the mask
  const bool need_mask = !keys_all_visible(sl, n0, BN, tile_min_limit);
  if (need_mask) {
    // key_visible() for key n0 + quad * 2 + c as one 32-bit bound per row on the block column c (a
    // constant after unrolling): one compare with an immediate per element
    const int last = block_last_visible<BN>(sl, n0 + quad * 2, row_limit0);
    const int last8 = block_last_visible<BN>(sl, n0 + quad * 2, row_limit0 + 8);
#pragma unroll
    for (int j = 0; j < NS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (j * 8 + (e & 1) > ((e & 2) ? last8 : last)) s[j * 4 + e] = -INFINITY;
      }
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float t[NS];
#pragma unroll
    for (int j = 0; j < NS; ++j) t[j] = fmaxf(s[j * 4 + 2 * h], s[j * 4 + 2 * h + 1]);
    tree_reduce(t, [](float a, float b) { return fmaxf(a, b); });
    float mx = fmaxf(t[0], __shfl_xor_sync(0xffffffffu, t[0], 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_old = row_max[h];
    const float m_new = fmaxf(m_old, mx);
    alpha[h] = 1.f;
    if (m_new > m_old) {  // -inf -> -inf: NaN > x is false
      alpha[h] = fast_exp2((m_old - m_new) * scale_log2);
      row_max[h] = m_new;
    }
    // A row that has seen only masked keys keeps max -inf; subtract 0 so exp2 gives 0, not NaN.
    m_scaled[h] = row_max[h] == -INFINITY ? 0.f : row_max[h] * scale_log2;
  }
}

// O's rows wrow and wrow + 8 times alpha[0] and alpha[1] (the online softmax's new maxima)
template <int N>
__device__ __forceinline__ void fwd_rescale_o(float (&acc_o)[N], const float (&alpha)[2]) {
#pragma unroll
  for (int j = 0; j < N / 4; ++j) {
    acc_o[j * 4 + 0] *= alpha[0];
    acc_o[j * 4 + 1] *= alpha[0];
    acc_o[j * 4 + 2] *= alpha[1];
    acc_o[j * 4 + 3] *= alpha[1];
  }
}

// O += P V for k-step kk (16 keys) of the V tile at aV (BN rows, 128-byte swizzle): one m64n{D}k16,
// or at head_dim 256 two m64n128k16 on O's column halves (the accumulator layout of n256 is that of
// two n128 side by side: registers [0, 64) hold columns [0, 128)).
template <typename T, int D, int BN>
__device__ __forceinline__ void fwd_pv_step(float (&acc_o)[D / 8 * 4], const uint32_t (&pa)[4], uint32_t aV, int kk) {
  constexpr bool kDA = kFwdDescAdd<D>;  // (desc_mn_major's kAdd)
  if constexpr (D == 256) {
    Mma<T>::template rs<128, 1>(reinterpret_cast<float(&)[64]>(acc_o[0]), pa, desc_mn_major<BN, kDA>(aV, 0, kk), 1);
    Mma<T>::template rs<128, 1>(reinterpret_cast<float(&)[64]>(acc_o[64]), pa, desc_mn_major<BN, kDA>(aV, 128, kk), 1);
  } else {
    Mma<T>::template rs<D, 1>(acc_o, pa, desc_mn_major<BN, kDA>(aV, 0, kk), 1);
  }
}

// One key block [n0, n0 + BN) for this warpgroup's 64 rows (K and V in shared memory at aK, aV):
// S = Q K^T, the mask where the block is not visible to every row of the tile, the online softmax
// update (eager rescale) and O += P V, for the kernel below (fwd_ws_sm90.cuh pipelines the same steps
// across blocks).
template <typename T, int D, int BM, int BN>
__device__ __forceinline__ void fwd_block(float (&acc_o)[D / 8 * 4], float (&row_max)[2], float (&row_sum)[2],
                                          uint32_t aQ, uint32_t aK, uint32_t aV, int wg, int quad, int n0,
                                          const distca_slice_t& sl, long long row_limit0, long long tile_min_limit,
                                          float scale_log2) {
  constexpr int NS = BN / 8;  // n8 blocks of S per row pair
  constexpr bool kDA = kFwdDescAdd<D>;  // (desc_k_major's kAdd)
  // S = Q K^T (this warpgroup's 64 rows x BN keys)
  float s[NS * 4];
#pragma unroll
  for (int i = 0; i < NS * 4; ++i) s[i] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    Mma<T>::template ss<BN, 0, 0>(s, desc_k_major<BM, kDA>(aQ, wg * 64, kk), desc_k_major<BN, kDA>(aK, 0, kk), kk > 0);
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(s);

  // Online softmax (eager rescale), rows wrow and wrow + 8 of this warpgroup: the row maxima
  // first, then P and O += P V in CHUNKS pieces along the keys, each piece's GEMMs issued as soon
  // as its P is packed, so that the exponentials of the next piece run under them.
  float alpha[2], m_scaled[2];
  fwd_mask_and_max<BN>(s, row_max, alpha, m_scaled, n0, sl, row_limit0, tile_min_limit, quad, scale_log2);
  fwd_rescale_o(acc_o, alpha);
  constexpr int CHUNKS = DISTCA_FWD_SM90_CHUNKS;
  constexpr int CK = BN / 16 / CHUNKS;  // k-steps (16 keys) per chunk
  static_assert(CK * CHUNKS * 16 == BN, "chunks must split the key block into whole k-steps");
  float part[2][NS];
  uint32_t pa[BN / 16][4];
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
#pragma unroll
    for (int kk = c * CK; kk < (c + 1) * CK; ++kk) {
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * kk + jj;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float p0 = fast_exp2(fmaf(s[j * 4 + 2 * h], scale_log2, -m_scaled[h]));
          const float p1 = fast_exp2(fmaf(s[j * 4 + 2 * h + 1], scale_log2, -m_scaled[h]));
          part[h][j] = p0 + p1;
          pa[kk][jj * 2 + h] = Elem<T>::pack(p0, p1);
        }
      }
    }
    fence_regs(pa);
    fence_regs(acc_o);
    wgmma_fence();
#pragma unroll
    for (int kk = c * CK; kk < (c + 1) * CK; ++kk) fwd_pv_step<T, D, BN>(acc_o, pa[kk], aV, kk);
    wgmma_commit();
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    tree_reduce(part[h], [](float a, float b) { return a + b; });
    row_sum[h] = row_sum[h] * alpha[h] + part[h][0];
  }
  wgmma_wait<0>();
  fence_regs(acc_o);
}

// fwd_block's mask and online-softmax update for a block whose S (this warpgroup's 64 rows x BN
// keys from n0) is complete in s: the row maxima (alpha: the factor that O and the row sums take),
// P in place of S (fp32) and P's row sums in part, for the warp-specialized kernel's pipelined loop.
template <int BN>
__device__ __forceinline__ void fwd_softmax_in_place(float (&s)[BN / 8 * 4], float (&row_max)[2], float (&alpha)[2],
                                                     float (&part)[2], int n0, const distca_slice_t& sl,
                                                     long long row_limit0, long long tile_min_limit, int quad,
                                                     float scale_log2) {
  constexpr int NS = BN / 8;
  float m_scaled[2];
  fwd_mask_and_max<BN>(s, row_max, alpha, m_scaled, n0, sl, row_limit0, tile_min_limit, quad, scale_log2);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float t[NS];
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      s[j * 4 + 2 * h] = fast_exp2(fmaf(s[j * 4 + 2 * h], scale_log2, -m_scaled[h]));
      s[j * 4 + 2 * h + 1] = fast_exp2(fmaf(s[j * 4 + 2 * h + 1], scale_log2, -m_scaled[h]));
      t[j] = s[j * 4 + 2 * h] + s[j * 4 + 2 * h + 1];
    }
    tree_reduce(t, [](float a, float b) { return a + b; });
    part[h] = t[0];
  }
}

// The end of a tile for this thread's two rows (wrow and wrow + 8 of the warpgroup): writes their
// LSE (natural log; -inf for a row that saw no key) where they are below `rows`, and hands each
// normalized, packed pair of O (tile row r, column c) to put(r, c, bits).
template <typename T, int D, typename Put>
__device__ __forceinline__ void fwd_finish(const float (&acc_o)[D / 8 * 4], const float (&row_max)[2],
                                           const float (&row_sum)[2], float scale, int wg, int wrow, int quad,
                                           int rows, float* gLse, Put put) {
  constexpr int NO = D / 8;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = row_sum[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int r = wg * 64 + wrow + h * 8;
    if (quad == 0 && r < rows) gLse[r] = l > 0.f ? row_max[h] * scale + logf(l) : -INFINITY;
#pragma unroll
    for (int j = 0; j < NO; ++j) {
      put(r, j * 8 + quad * 2, Elem<T>::pack(acc_o[j * 4 + 2 * h] * inv, acc_o[j * 4 + 2 * h + 1] * inv));
    }
  }
}

// Normalizes O, writes the LSE and O rows of this warpgroup (4-byte stores: 4 threads write a row's
// 16 contiguous bytes); rows at or past `rows` are not written.
template <typename T, int D>
__device__ __forceinline__ void fwd_epilogue(const float (&acc_o)[D / 8 * 4], const float (&row_max)[2],
                                             const float (&row_sum)[2], float scale, int wg, int wrow, int quad,
                                             int rows, T* gO, long long q_stride, float* gLse) {
  fwd_finish<T, D>(acc_o, row_max, row_sum, scale, wg, wrow, quad, rows, gLse, [&](int r, int c, uint32_t bits) {
    if (r < rows) *reinterpret_cast<uint32_t*>(gO + r * q_stride + c) = bits;
  });
}

template <typename T, int D>
__device__ __forceinline__ void fwd_kernel(const distca_fwd_params_t& p) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = FwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, THREADS = Cfg::kThreads;
  constexpr int NO = D / 8;  // n8 blocks of O
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert((D == 64 || D == 128 || D == 256) && BN % 64 == 0, "whole 64-column swizzle blocks");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + Cfg::kSmemQ;       // [2][BN][D]
  T* sV = sK + 2 * Cfg::kSmemKV;  // [2][BN][D]

  const int tid = threadIdx.x;
  const int wg = tid >> 7;
  const int wrow = wgmma_acc_row(tid);  // first of this thread's 2 rows in the 64
  const int quad = tid & 3;
  const FwdTile<T, D, BM> tile(p);
  const distca_slice_t& sl = tile.sl;
  const int m0 = tile.m0, rows = tile.rows;
  const long long q_stride = tile.q_stride, kv_stride = tile.kv_stride;
  const T* gK = tile.gK;
  const T* gV = tile.gV;
  T* gO = tile.gO;
  float* gLse = tile.gLse;
  const T* fallback = reinterpret_cast<const T*>(p.q);

  const int n_end = fwd_visible_keys<D, THREADS>(sl, m0, rows, gO, q_stride, gLse, tid);
  if (n_end == 0) return;

  const int n_blocks = (n_end + BN - 1) / BN;
  const float scale_log2 = p.scale * kLog2e;

  load_tile_sw128<BM, D, THREADS>(sQ, tile.gQ, q_stride, rows, fallback, tid);
  {
    const int nb = n_blocks - 1;
    const int valid = min(BN, sl.kv_len - nb * BN);
    load_tile_sw128<BN, D, THREADS>(sK, gK + nb * BN * kv_stride, kv_stride, valid, fallback, tid);
    load_tile_sw128<BN, D, THREADS>(sV, gV + nb * BN * kv_stride, kv_stride, valid, fallback, tid);
  }
  cp_async_commit();

  float acc_o[NO * 4];
#pragma unroll
  for (int i = 0; i < NO * 4; ++i) acc_o[i] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const uint32_t aQ = smem_addr(sQ);
  const long long row_limit0 = (long long)m0 + wg * 64 + wrow + sl.diagonal;  // causal limit of row wrow
  const long long tile_min_limit = (long long)m0 + sl.diagonal;

  for (int it = 0; it < n_blocks; ++it) {
    const int nb = n_blocks - 1 - it;
    const int stage = it & 1;
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();  // block `it` is in; everyone is done with the other stage (block it - 1)
    if (it + 1 < n_blocks) {
      const int nn = nb - 1;
      const int valid = min(BN, sl.kv_len - nn * BN);
      load_tile_sw128<BN, D, THREADS>(sK + (stage ^ 1) * Cfg::kSmemKV, gK + nn * BN * kv_stride, kv_stride, valid,
                                      fallback, tid);
      load_tile_sw128<BN, D, THREADS>(sV + (stage ^ 1) * Cfg::kSmemKV, gV + nn * BN * kv_stride, kv_stride, valid,
                                      fallback, tid);
    }
    cp_async_commit();
    const uint32_t aK = smem_addr(sK + stage * Cfg::kSmemKV), aV = smem_addr(sV + stage * Cfg::kSmemKV);

    fwd_block<T, D, BM, BN>(acc_o, row_max, row_sum, aQ, aK, aV, wg, quad, nb * BN, sl, row_limit0, tile_min_limit,
                            scale_log2);
  }

  fwd_epilogue<T, D>(acc_o, row_max, row_sum, p.scale, wg, wrow, quad, rows, gO, q_stride, gLse);
#else
  __trap();  // only the sm_90a image has this kernel's body; hosts elsewhere never launch it
#endif
}

}  // namespace sm90
}  // namespace distca
