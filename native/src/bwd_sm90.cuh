// Backward on Hopper (sm_90a): the same work decomposition as bwd.cuh (one CTA per key tile of a
// segment and key/value head, looping over every slice / GQA head / query tile that sees the key
// tile; dK, dV summed in registers and written once; dQ through fp32 atomics), with the GEMMs on
// warpgroup MMA (wgmma) instead of per-warp mma.sync:
//
//   2 warpgroups; warpgroup g owns keys [64g, 64g + 64) of the 128-key tile.
//   phase A  S^T = K Q^T, dP^T = V dO^T      m64n64k16, A and B from shared memory (K-major)
//   phase B  dV += P^T dO, dK += dS^T Q      m64n{D}k16, A = P^T / dS^T straight from the phase-A
//                                            accumulators in registers, B from shared memory (N-major)
//   phase C  dQ[:, half g] = dS K[:, half g] m64n{D/2}k16, A = dS^T from shared memory (M-major),
//                                            B = K (N-major)
//
// wgmma reads each B tile once per warpgroup (mma.sync re-reads it in every warp through ldmatrix),
// which is what bounded the mma.sync backward (native/NOTES.md v4). Every shared tile is in the
// canonical 128-byte-swizzled layout (blocks of 64 columns, each [rows][64] with the 16-byte chunks
// of row r XOR-permuted by r % 8), which serves both as a K-major and as an MN-major operand.
#pragma once

#include <type_traits>

#include "common.cuh"
#include "wgmma.cuh"

namespace distca {
namespace sm90 {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define DISTCA_SM90_WGMMA 1
#endif

// Element (row, col) of a ROWS x COLS 128B-swizzled tile (COLS a multiple of 64).
template <int ROWS>
__device__ __forceinline__ int sw128(int row, int col) {
  return (col >> 6) * (ROWS * 64) + row * 64 + ((((col >> 3) & 7) ^ (row & 7)) << 3) + (col & 7);
}

// Whether the backward's staged dK/dV (bwd_store_dkdv_staged) stores a warp's accumulator fragments
// with stmatrix (four 8x8 matrices an instruction: a quarter of the 4-byte stores, the same
// wavefronts; H100 0.999-1.004, causal 2K up to +3%: NOTES v78). The forward's staged O the same way
// lost 1-4% at d128 (native/experiments/v78-fwd-o-stmatrix.patch).
#ifndef DISTCA_BWD_DKDV_STMATRIX
#define DISTCA_BWD_DKDV_STMATRIX 1
#endif

// stmatrix.x4: the warp's four 8x8 matrices of 16-bit elements, register i of lane l the elements
// (l / 4, 2 * (l % 4) .. + 1) of matrix i; lane l gives the shared address of row l % 8 of matrix
// l / 8 (16 bytes a row).
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}

// Stores a warp's 16 rows of 16-bit pairs in the wgmma accumulator layout (rows row0 + lane / 4 and
// row0 + 8 + lane / 4, columns col0 + j * 8 + (lane % 4) * 2 + {0, 1}, j < NJ; the pair pack(j, h) for
// row half h) into a ROWS-row sw128 tile of 16-bit elements, starting at row row0 (a multiple of 8)
// and column col0 (a multiple of 16).
template <int ROWS, int NJ, typename T, typename Pack>
__device__ __forceinline__ void stage_pairs_sw128(T* tile, int row0, int lane, Pack pack, int col0 = 0) {
  static_assert(sizeof(T) == 2 && NJ % 2 == 0, "16-bit elements, whole 16-column pairs of blocks");
  if constexpr (DISTCA_BWD_DKDV_STMATRIX != 0) {
    // matrix m = h + 2 * (j % 2): rows h * 8 + 0..7, columns (j + m / 2) * 8 + 0..7, one 16-byte row
    // each; lane l gives the address of row l % 8 of matrix l / 8
    const int m = lane >> 3;
    const int r = row0 + (m & 1) * 8 + (lane & 7);
#pragma unroll
    for (int j = 0; j < NJ; j += 2) {
      stmatrix_x4(smem_addr(tile + sw128<ROWS>(r, col0 + (j + (m >> 1)) * 8)), pack(j, 0), pack(j, 1),
                  pack(j + 1, 0), pack(j + 1, 1));
    }
  } else {
    const int g = lane >> 2, quad = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        *reinterpret_cast<uint32_t*>(tile + sw128<ROWS>(row0 + h * 8 + g, col0 + j * 8 + quad * 2)) = pack(j, h);
      }
    }
  }
}

struct Sw128Layout {
  template <int ROWS, int COLS>
  static __device__ __forceinline__ int at(int r, int c) {
    return sw128<ROWS>(r, c);
  }
};

template <int ROWS, int COLS, int THREADS, typename T>
__device__ __forceinline__ void load_tile_sw128(T* smem, const T* gmem, long long row_stride, int valid_rows,
                                                const T* fallback, int tid) {
  load_tile<Sw128Layout, ROWS, COLS, THREADS>(smem, gmem, row_stride, valid_rows, fallback, tid);
}

// The dynamic shared memory from its first 1024-byte boundary (the 128-byte swizzle repeats every
// 1024 bytes, and the descriptors assume a tile starts on one); configs reserve 1 KiB for this.
__device__ __forceinline__ unsigned char* smem_aligned_1k(unsigned char* raw) {
  const uint32_t a = smem_addr(raw);
  return raw + (((a + 1023) & ~1023u) - a);
}

// Shared-memory matrix descriptor, 128-byte swizzle. Addresses and offsets in bytes.
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

// The head dims of the forward (this one and up) and of bwd_step's backward (this one) whose kernels
// build their k-steps' descriptors by adding the offset to the tile's descriptor (kAdd below; NOTES
// v95: d128 forward +0.3-1.2%, backward +1-1.6%, d256 forward +0.6-0.9%; d64 lost 2-3% forward and its
// 128-row backward spilled, d256's backward 0.3-0.7%).
#ifndef DISTCA_DESC_ADD_FWD_MIN_D
#define DISTCA_DESC_ADD_FWD_MIN_D 128
#endif
#ifndef DISTCA_DESC_ADD_BWD_D
#define DISTCA_DESC_ADD_BWD_D 128
#endif
// Descriptor of the 16-wide k-step `kk` of a tile with ROWS rows used as a K-major operand (rows =
// M or N, columns = K): 8-row groups 1024 bytes apart; the k-step moves 32 bytes inside a 64-column
// block, or to the next block. kAdd: the offset added to the tile's descriptor (its address field, in
// 16-byte units: tiles and offsets are 16-byte multiples and no sum leaves the 256 KiB the field
// holds), so that the tile's part can be computed once, instead of each k-step's address encoded anew.
template <int ROWS, bool kAdd = false>
__device__ __forceinline__ uint64_t desc_k_major(uint32_t tile, int row0, int kk) {
  const uint32_t off = (kk >> 2) * (ROWS * 128) + row0 * 128 + (kk & 3) * 32;
  if constexpr (kAdd) return make_desc(tile, 16, 1024) + (off >> 4);
  else return make_desc(tile + off, 16, 1024);
}

// Descriptor of k-step `kk` of a tile with ROWS rows used as an MN-major operand (rows = K, columns
// = M or N, starting at column col0, a multiple of 64): 64-column blocks ROWS * 128 bytes apart
// (LBO), 8-row groups 1024 bytes apart (SBO); the k-step moves 16 rows.
template <int ROWS, bool kAdd = false>
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t tile, int col0, int kk) {
  const uint32_t off = (col0 >> 6) * (ROWS * 128) + kk * 2048;
  if constexpr (kAdd) return make_desc(tile, ROWS * 128, 1024) + (off >> 4);
  else return make_desc(tile + off, ROWS * 128, 1024);
}
template <int D>
constexpr bool kFwdDescAdd = D >= DISTCA_DESC_ADD_FWD_MIN_D;
template <int D>
constexpr bool kBwdDescAdd = D == DISTCA_DESC_ADD_BWD_D;

// The first of the two rows (r and r + 8) of an m64 warpgroup-MMA accumulator that thread t of the
// warpgroup holds: warp (t / 32) % 4 holds rows [16w, 16w + 16), its lane l rows l / 4 and l / 4 + 8.
__device__ __forceinline__ int wgmma_acc_row(int t) { return ((t >> 5) & 3) * 16 + ((t & 31) >> 2); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of these registers across wgmma issue/wait points.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
  }
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Element-type dispatch of the generated wrappers.
template <typename T>
struct Mma {
  static constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  static_assert(kBf16 || std::is_same<T, __half>::value, "bf16 or fp16");
  template <int N, int TA, int TB>
  static __device__ __forceinline__ void ss(float (&d)[N / 2], uint64_t a, uint64_t b, int scale_d) {
    static_assert(N == 32 || N == 64 || N == 80 || N == 128, "m64n{32,64,80,128}k16");
    if constexpr (N == 32) {
      if constexpr (kBf16) wgmma_ss_m64n32k16_bf16<TA, TB>(d, a, b, scale_d);
      else wgmma_ss_m64n32k16_f16<TA, TB>(d, a, b, scale_d);
    } else if constexpr (N == 80) {
      if constexpr (kBf16) wgmma_ss_m64n80k16_bf16<TA, TB>(d, a, b, scale_d);
      else wgmma_ss_m64n80k16_f16<TA, TB>(d, a, b, scale_d);
    } else if constexpr (N == 64) {
      if constexpr (kBf16) wgmma_ss_m64n64k16_bf16<TA, TB>(d, a, b, scale_d);
      else wgmma_ss_m64n64k16_f16<TA, TB>(d, a, b, scale_d);
    } else {
      if constexpr (kBf16) wgmma_ss_m64n128k16_bf16<TA, TB>(d, a, b, scale_d);
      else wgmma_ss_m64n128k16_f16<TA, TB>(d, a, b, scale_d);
    }
  }
  template <int N, int TB>
  static __device__ __forceinline__ void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b, int scale_d) {
    static_assert(N == 64 || N == 128, "m64n{64,128}k16");
    if constexpr (N == 64) {
      if constexpr (kBf16) wgmma_rs_m64n64k16_bf16<TB>(d, a, b, scale_d);
      else wgmma_rs_m64n64k16_f16<TB>(d, a, b, scale_d);
    } else {
      if constexpr (kBf16) wgmma_rs_m64n128k16_bf16<TB>(d, a, b, scale_d);
      else wgmma_rs_m64n128k16_f16<TB>(d, a, b, scale_d);
    }
  }
};

// The head dims up to which the warp-specialized backward holds K, V and K^T as A fragments in
// registers (kKvFrag).
#ifndef DISTCA_BWD_KV_FRAG_MAX_D
#define DISTCA_BWD_KV_FRAG_MAX_D 64
#endif

template <int D>
struct BwdSm90Config {
  // head_dim 256 (bwd_d256_sm90.cuh): 64-key tiles, whose dK and dV the two warpgroups split by
  // columns, and P^T handed from one warpgroup to the other in fp32 (kPStride floats a key: 72, so
  // that the fragment stores and loads of a half-warp hit 32 different banks)
  static constexpr int BM = 64, BN = D == 256 ? 64 : 128;
  static constexpr int kBlockM = BM, kBlockN = BN;  // for the host (distca_attn_info_t)
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSmemKV = BN * D;  // elements
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemP = BN * BM;
  static constexpr int kPStride = BM + 8;
  static constexpr int kSmemPf32 = D == 256 ? BN * kPStride * 4 : 0;  // bytes
  // K, V, 2 stages of Q and dO, dS^T (16-bit), (d256) P^T, 2 stages of LSE and D (fp32), plus 1 KiB
  // so that the tiles can start on a 1024-byte boundary (the swizzle pattern's period).
  static constexpr int kSmemBytes = (2 * kSmemKV + 4 * kSmemQ + kSmemP) * 2 + kSmemPf32 + 4 * BM * 4 + 1024;
};

// Whether the warp-specialized backward keeps this warpgroup's 64 rows of K and V in registers, as
// the A fragments of phase A's S^T = K Q^T and dP^T = V dO^T (NOTES v29), and K^T's for phase C
// computed as dQ^T = K^T dS^T (v31): 48 registers at head_dim 64, loaded once per key tile. Phases A
// and C then read only one operand each from shared memory, whose 128 bytes per tensor cycle both
// operands took. At 128 they do not fit (K alone, 32 registers, spills).
template <int D>
constexpr bool kKvFrag = D <= DISTCA_BWD_KV_FRAG_MAX_D;

// This warpgroup's 64 rows of a tile (ROWS x D, 128-byte swizzle; rows from wg * 64) as wgmma A
// fragments, k-step kk (16 columns of the head dim) in frag[kk]: a0 row, k 0-7; a1 row + 8, k 0-7;
// a2 row, k 8-15; a3 row + 8, k 8-15 (rows wrow and wrow + 8 of the warpgroup's 64).
template <int D, int ROWS, typename T>
__device__ __forceinline__ void load_a_frag(uint32_t (&frag)[D / 16][4], const T* tile, int wg, int wrow, int quad) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = wg * 64 + wrow + (i & 1) * 8, c = kk * 16 + (i >> 1) * 8 + quad * 2;
      frag[kk][i] = *reinterpret_cast<const uint32_t*>(tile + sw128<ROWS>(r, c));
    }
  }
}

// This warpgroup's 64 keys of a key tile (ROWS x D, 128-byte swizzle) as the A fragments of K^T (D x
// keys; D = 64): k-step kk (16 keys) in frag[kk], rows d = wrow and wrow + 8, k = keys.
template <int D, int ROWS, typename T>
__device__ __forceinline__ void load_at_frag(uint32_t (&frag)[4][4], const T* tile, int wg, int wrow, int quad) {
  static_assert(D == 64, "K^T of one warpgroup's 64 keys: 4 k-steps");
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int d = wrow + (i & 1) * 8, key = wg * 64 + kk * 16 + (i >> 1) * 8 + quad * 2;
      const uint16_t lo = *reinterpret_cast<const uint16_t*>(tile + sw128<ROWS>(key, d));
      const uint16_t hi = *reinterpret_cast<const uint16_t*>(tile + sw128<ROWS>(key + 1, d));
      frag[kk][i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
  }
}

// Whether bwd_step reads its query columns' LSE and D from shared memory as 8-byte loads of the pairs
// a thread holds (columns 2c, 2c + 1) instead of one 4-byte load an element (NOTES v95: the loads queue
// behind phase A's operand reads in the MIO pipe; half as many made d128 +2.6-4.8%, d64 +1.5-12%): 1.
#ifndef DISTCA_BWD_LSE_PAIRS
#define DISTCA_BWD_LSE_PAIRS 1
#endif
// The head dim at which bwd_step stores a k-step's dS^T fragments with one stmatrix.x4 a warp instead
// of four 4-byte stores a thread (stage_pairs_sw128's layout; NOTES v95): 128 (+0.8-1.6%; at 64 it
// read 0.97-1.01, its 128-row steps the least).
#ifndef DISTCA_BWD_DS_STMATRIX_D
#define DISTCA_BWD_DS_STMATRIX_D 128
#endif
// The head dim whose warp-specialized backward (not the group-split kernel, kAddKv) issues a step's
// LSE loads ahead of phase A's GEMMs (bwd_step's kLseEarly; NOTES v97: d128 +1.4-3.3%, causal 512
// the same; d64's 128-row kernel and the kAddKv kernels spill with them, 84-120 bytes; 0: none).
#ifndef DISTCA_BWD_LSE_EARLY_D
#define DISTCA_BWD_LSE_EARLY_D 128
#endif
// (bwd_step's kDsSplit) dS^T's reuse between the two consumer warpgroups on named barriers 5 and 6
// instead of a barrier of both at each step's start: barrier 5 + w is waited for by warpgroup w
// before it writes its rows of dS^T and arrived at by the other warpgroup once its phase C, which
// reads both warpgroups' rows, is complete; each warpgroup arrives once ahead (bwd_ws_kernel_body),
// so that the first step's wait passes, and waits once more at its end for the last arrival.
__device__ __forceinline__ void ds_free_wait(int wg) {
  asm volatile("bar.sync %0, 256;\n" ::"r"(5 + wg) : "memory");
}
__device__ __forceinline__ void ds_free_arrive(int wg) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(6 - wg) : "memory");
}
// The first dQ workspace column of warpgroup wg's phase-C tile (see bwd_step's kSplitN).
template <int D>
__device__ __forceinline__ int dq_column(int wg) {
  return D >= 128 ? wg * (D / 2) : 0;
}

// One query tile of the backward walk (cursor `cur`) against this CTA's key tile, for this
// warpgroup's 64 keys: phase A, the element-wise P^T and dS^T, phase B into acc_dk/acc_dv, phase C
// and dQ's atomics. Q and dO of the tile are at aQ/adO, its LSE (log2 domain) and D at cLse/cDsum;
// sync() must make the two warpgroups' dS^T halves visible to each other (a barrier over both);
// store_dq(acc_dq, row0, hq, rows) adds this warpgroup's 64 x 64 dQ tile (acc_dq, the m64n64
// accumulator fragments; columns from dq_column(wg)) to the fp32 workspace at fused row row0;
// after_a() runs once this warpgroup has read V for the last time in the step (after phase A).
// Shared by the kernel below and the warp-specialized one (bwd_ws_sm90.cuh).
template <typename T, int D, bool kMayMask = true, bool kUpperHidden = false, bool kKvRegs = false, int QH = 1,
          bool kDsSplit = false, bool kLseEarly = false, typename Sync, typename StoreDq, typename AfterA>
__device__ __forceinline__ void bwd_step(float (&acc_dk)[D / 8 * 4], float (&acc_dv)[D / 8 * 4],
                                         const distca_bwd_params_t& p, const BwdCursor& cur, int head_kv, int group,
                                         int kb0, uint32_t aK, uint32_t aV, uint32_t aQ, uint32_t adO, T* sdS,
                                         const float* cLse, const float* cDsum, int wg, int wrow, int quad,
                                         float scale_log2, Sync sync, StoreDq store_dq, AfterA after_a,
                                         const uint32_t (*kv_frag)[4] = nullptr) {
  using Cfg = BwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN;
  constexpr int NS = BM / 8;  // n8 blocks of S^T per thread row pair (queries)
  // QH = 2 (head_dim 64, kKvRegs): a step of two 64-query halves (BMQ rows), phases A and B half by
  // half and one phase C over both (NOTES v81); Q, dO and dS^T hold BMQ query rows / columns.
  constexpr int BMQ = BM * QH;
  static_assert(QH == 1 || (QH == 2 && kKvRegs && !kUpperHidden), "two query halves: head_dim 64's register path");
  // Phase C: with D = 128 each warpgroup computes one 64-column half of dQ over all 128 keys; with
  // D = 64 (one swizzle block, which cannot be split) each computes all of dQ over its own 64 keys,
  // and both add their partial sums with the atomics.
  constexpr bool kSplitN = D >= 128;
  constexpr int NQ = kSplitN ? D / 2 / 8 : D / 8;  // n8 blocks of this warpgroup's dQ accumulators
  constexpr int C_STEPS = kSplitN ? BN / 16 : BN / 32;
  static_assert(!kUpperHidden || (kSplitN && kMayMask), "bwd_upper_hidden: D = 128, a masked tile");
  static_assert(NQ == 8, "a 64 x 64 dQ tile per warpgroup and query half (store_dq's contract)");
  const uint32_t adS = smem_addr(sdS);
  constexpr bool kDA = kBwdDescAdd<D>;  // (desc_k_major's kAdd)
  constexpr bool kDsStm = D == DISTCA_BWD_DS_STMATRIX_D;
  const distca_slice_t& sl = cur.sl;
  const int m0 = cur.mb * BMQ;
  const int hq = head_kv * group + cur.group_head;

#pragma unroll
  for (int qh = 0; qh < QH; ++qh) {
    const int q0 = qh * BM;  // the half's first row of the step's BMQ
    // ---- phase A: S^T, dP^T (this warpgroup's 64 keys x 64 queries)
    float st[NS * 4], dpt[NS * 4];
    uint32_t pa[BM / 16][4], dsa[BM / 16][4];
    if (kUpperHidden && wg == 1) {  // bwd_upper_hidden: warpgroup 1's keys are all hidden
      after_a();                    // (it reads no V)
      if constexpr (kDsSplit) ds_free_wait(wg);  // (writes no dS^T, but keeps the barrier's count)
    } else {
#pragma unroll
      for (int i = 0; i < NS * 4; ++i) st[i] = dpt[i] = 0.f;
      // (DISTCA_BWD_LSE_PAIRS) this thread's LSE, query columns q0 + j * 8 + quad * 2 + {0, 1}, as 8-byte
      // loads; kLseEarly: issued here, ahead of phase A's GEMMs, not after the S^T wait, where they
      // queued behind dP^T's shared-memory operand reads (ncu, NOTES v97)
      float2 lse2[NS];
      auto load_lse = [&] {
#pragma unroll
        for (int j = 0; j < NS; ++j) {
          if constexpr (DISTCA_BWD_LSE_PAIRS) lse2[j] = *reinterpret_cast<const float2*>(cLse + q0 + j * 8 + quad * 2);
        }
      };
      if constexpr (kLseEarly) load_lse();
      // S^T first, then dP^T, each its own group: P^T's exponentials run while dP^T's GEMM does
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        if constexpr (kKvRegs)  // K's A fragments from registers (kKvFrag)
          Mma<T>::template rs<BM, 0>(st, kv_frag[kk], desc_k_major<BMQ, kDA>(aQ, q0, kk), kk > 0);
        else
          Mma<T>::template ss<BM, 0, 0>(st, desc_k_major<BN, kDA>(aK, wg * 64, kk), desc_k_major<BM, kDA>(aQ, 0, kk), kk > 0);
      }
      wgmma_commit();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        if constexpr (kKvRegs)  // V's, after K's
          Mma<T>::template rs<BM, 0>(dpt, kv_frag[D / 16 + kk], desc_k_major<BMQ, kDA>(adO, q0, kk), kk > 0);
        else
          Mma<T>::template ss<BM, 0, 0>(dpt, desc_k_major<BN, kDA>(aV, wg * 64, kk), desc_k_major<BM, kDA>(adO, 0, kk), kk > 0);
      }
      wgmma_commit();

      // P^T = exp2(S^T scale - LSE), dS^T = P^T (dP^T - D); into A fragments (k = queries) and dS^T
      // into shared memory for phase C.
      const int key_a = kb0 + wg * 64 + wrow - sl.k_start;  // this thread's first key, inside the slice
      // kMayMask = false: the caller knows every key of the tile is visible to every query (no mask code)
      const bool full_tile = !kMayMask || keys_all_visible(sl, kb0 - sl.k_start, BN, (long long)m0 + sl.diagonal);
      // key_visible() for this thread's keys key_a + 8h and the queries m0 + q0 + quad * 2 + c of the
      // tile, as one 32-bit bound per key on the column c, a constant after unrolling: c is visible from
      // first_q[h] on (BM: never).
      int first_q[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int key = key_a + h * 8;
        first_q[h] = block_first_query<BM>(sl, key, (long long)m0 + q0 + quad * 2 + sl.diagonal);
      }
      wgmma_wait<1>();  // S^T (dP^T may still run)
      fence_regs(st);
      if constexpr (!kLseEarly) load_lse();
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int i = j * 4 + h * 2 + e;
            const float lse = DISTCA_BWD_LSE_PAIRS ? (e ? lse2[j].y : lse2[j].x) : cLse[q0 + j * 8 + quad * 2 + e];
            const float pr = fast_exp2(fmaf(st[i], scale_log2, -lse));
            st[i] = !full_tile && j * 8 + e < first_q[h] ? 0.f : pr;  // P^T in place
          }
        }
      }
      wgmma_wait<0>();
      fence_regs(dpt);
      if (qh == QH - 1) after_a();  // this warpgroup's last read of V in the step
      // (kDsSplit) the other warpgroup's previous phase C is done reading dS^T: this one may write its rows
      if constexpr (kDsSplit) ds_free_wait(wg);
      // Phase B (dV += P^T dO, dK += dS^T Q, this warpgroup's 64 keys x D) is issued 16 queries at a
      // time, as soon as that k-step's P^T and dS^T fragments are packed, so that the element-wise
      // work of the next k-step runs under the tensor cores.
#pragma unroll
      for (int kk = 0; kk < BM / 16; ++kk) {
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
          const int j = 2 * kk + jj;
          // (DISTCA_BWD_LSE_PAIRS) D of the columns q0 + j * 8 + quad * 2 + {0, 1}, one 8-byte load for both rows
          float2 d2 = make_float2(0.f, 0.f);
          if constexpr (DISTCA_BWD_LSE_PAIRS) d2 = *reinterpret_cast<const float2*>(cDsum + q0 + j * 8 + quad * 2);
#pragma unroll
          for (int h = 0; h < 2; ++h) {  // rows wrow and wrow + 8
            float pv[2], dv[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int q = q0 + j * 8 + quad * 2 + e;
              const int i = j * 4 + h * 2 + e;
              const float dsum = DISTCA_BWD_LSE_PAIRS ? (e ? d2.y : d2.x) : cDsum[q];
              pv[e] = st[i];
              dv[e] = st[i] * (dpt[i] - dsum);
            }
            const uint32_t dd = Elem<T>::pack(dv[0], dv[1]);
            // A fragment of k-step kk: a0 (row, k 0-7), a1 (row+8, k 0-7), a2 (row, k 8-15), a3 (row+8, k 8-15)
            pa[kk][jj * 2 + h] = Elem<T>::pack(pv[0], pv[1]);
            dsa[kk][jj * 2 + h] = dd;
            if constexpr (!kDsStm)
              *reinterpret_cast<uint32_t*>(sdS + sw128<BN>(wg * 64 + wrow + h * 8, q0 + j * 8 + quad * 2)) = dd;
          }
        }
        if constexpr (kDsStm)  // the k-step's dS^T fragments (columns q0 + 16 kk ..): one stmatrix.x4
          stage_pairs_sw128<BN, 2>(sdS, wg * 64 + (wrow & ~15), (int)(threadIdx.x & 31),
                                   [&](int jj, int h) { return dsa[kk][jj * 2 + h]; }, q0 + 16 * kk);
        fence_regs(pa);
        fence_regs(dsa);
        wgmma_fence();
        Mma<T>::template rs<D, 1>(acc_dv, pa[kk], desc_mn_major<BMQ, kDA>(adO, 0, qh * (BM / 16) + kk), 1);
        Mma<T>::template rs<D, 1>(acc_dk, dsa[kk], desc_mn_major<BMQ, kDA>(aQ, 0, qh * (BM / 16) + kk), 1);
        wgmma_commit();
      }
      if constexpr (kUpperHidden) {  // nothing in flight where the warpgroups' paths join (else ptxas serializes)
        wgmma_wait<0>();
        fence_regs(acc_dk);
        fence_regs(acc_dv);
      }
      // (QH = 2) each half's phase B complete before the next GEMMs: its P^T / dS^T fragments are free
      // again. Without the wait before phase C (dQ^T's 64 accumulators) ptxas serialized every wgmma
      // (C7512) and spilled 96-120 bytes (NOTES v81).
      if (QH > 1) {
        wgmma_wait<0>();
        fence_regs(acc_dk);
        fence_regs(acc_dv);
      }
    }
  }  // query halves

  // ---- phase C: dQ += dS K (see kSplitN), atomics into the workspace
  fence_proxy_async();  // dS^T was written by ordinary stores
  sync();               // both warpgroups' halves of dS^T are in
  float acc_dq[NQ * 4 * QH];  // (QH = 2: dQ^T of both halves, N = BMQ queries)
#pragma unroll
  for (int i = 0; i < NQ * 4 * QH; ++i) acc_dq[i] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < (kUpperHidden ? C_STEPS / 2 : C_STEPS); ++kk) {  // the upper keys' dS are 0
    const int key_step = kSplitN ? kk : wg * C_STEPS + kk;  // 16-key step
    if constexpr (kKvRegs)  // dQ^T = K^T dS^T, K^T's A fragments from registers (kKvFrag)
      Mma<T>::template rs<NQ * 8 * QH, 1>(acc_dq, kv_frag[2 * (D / 16) + kk], desc_mn_major<BN, kDA>(adS, 0, key_step),
                                          kk > 0);
    else
      Mma<T>::template ss<NQ * 8, 1, 1>(acc_dq, desc_mn_major<BN, kDA>(adS, 0, key_step),
                                        desc_mn_major<BN, kDA>(aK, dq_column<D>(wg), key_step), kk > 0);
  }
  wgmma_commit();
  wgmma_wait<0>();
  if constexpr (kDsSplit) ds_free_arrive(wg);  // this warpgroup is done reading dS^T
  fence_regs(acc_dq);
  fence_regs(acc_dk);
  fence_regs(acc_dv);
  store_dq(acc_dq, sl.q_start + m0, hq, min(BMQ, sl.q_len - m0));
}

// Whether the upper 64 keys of the key tile at kb0 are hidden from every query of the cursor's
// query tile (the query tile left of the diagonal's first 64 keys, or a key tile that ends inside
// its lower half), so that their P and dS are 0. bwd_step<..., kUpperHidden = true> (D = 128) then
// leaves warpgroup 1 out of phases A and B, and both warpgroups' phase C reads only the lower 64
// keys of dS^T (the ones warpgroup 0 wrote): on the diagonal of causal shards this is one of every
// key tile's two diagonal steps, and warpgroup 0 has the tensor cores to itself for it.
template <int BM, int BN>
__device__ __forceinline__ bool bwd_upper_hidden(const BwdCursor& cur, int kb0) {
  return keys_hidden_from(cur.sl, kb0 + BN / 2 - cur.sl.k_start, (long long)cur.mb * BM + BM - 1 + cur.sl.diagonal);
}

// bwd_step's store_dq through fp32 atomics (rows at or past `rows` skipped): this warpgroup's 64 x
// (N / 2) tile of dQ (m64 accumulator fragments), from column dq_column<D>(wg).
template <int D, int N>
__device__ __forceinline__ void bwd_dq_atomics(const float (&acc_dq)[N], const distca_bwd_params_t& p, int row0, int hq,
                                               int rows, int wg, int wrow, int quad) {
  const long long q_stride = (long long)p.heads_q * D;
  float* base = reinterpret_cast<float*>(p.dq_accum) + ((long long)row0 * p.heads_q + hq) * D + dq_column<D>(wg) + quad * 2;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int q = wrow + h * 8;
    if (q < rows) {
#pragma unroll
      for (int j = 0; j < N / 4; ++j) {
        atomicAdd(reinterpret_cast<float2*>(base + q * q_stride + j * 8),
                  make_float2(acc_dq[j * 4 + h * 2], acc_dq[j * 4 + h * 2 + 1]));
      }
    }
  }
}

// Writes this warpgroup's part of the key tile's dK (times the softmax scale) and dV: its 64 keys
// and all D columns, or (NC < D: the warpgroups split the columns) all 64 keys and its NC columns
// from wg * NC. Rows past the segment are not written, rows no slice read get 0.
template <typename T, int D, int BN, int NC = D>
__device__ __forceinline__ void bwd_store_dkdv(const float (&acc_dk)[NC / 8 * 4], const float (&acc_dv)[NC / 8 * 4],
                                               const distca_bwd_params_t& p, const BwdTile<BN>& tile, int wg, int wrow,
                                               int quad) {
  constexpr int NKV = NC / 8;
  const int key0 = NC == D ? wg * 64 : 0, col0 = NC == D ? 0 : wg * NC;
  const long long kv_stride = (long long)p.heads_kv * D;
  T* gdK = reinterpret_cast<T*>(p.dk) + ((long long)tile.kb0 * p.heads_kv + tile.head_kv) * D;
  T* gdV = reinterpret_cast<T*>(p.dv) + ((long long)tile.kb0 * p.heads_kv + tile.head_kv) * D;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = key0 + wrow + h * 8;
    if (r < tile.k_rows) {
#pragma unroll
      for (int j = 0; j < NKV; ++j) {
        const int c = col0 + j * 8 + quad * 2;
        *reinterpret_cast<uint32_t*>(gdK + r * kv_stride + c) =
            Elem<T>::pack(acc_dk[j * 4 + h * 2] * p.scale, acc_dk[j * 4 + h * 2 + 1] * p.scale);
        *reinterpret_cast<uint32_t*>(gdV + r * kv_stride + c) =
            Elem<T>::pack(acc_dv[j * 4 + h * 2], acc_dv[j * 4 + h * 2 + 1]);
      }
    }
  }
}

// What a non-warp-specialized wgmma backward CTA sets up before its walk (this file's kernel and
// bwd_d256_sm90.cuh's): its key tile, whose K and V rows it starts loading into sK/sV, and the loader
// of the walk's Q/dO tiles (BM rows, 128-byte swizzle, cp.async by all THREADS threads).
template <int BM, int BN, int D, int THREADS, typename T>
struct BwdCtaLoads {
  const BwdTile<BN> tile;
  const T* fallback;
  int tid;
  __device__ __forceinline__ BwdCtaLoads(const distca_bwd_params_t& p, T* sK, T* sV, int tid_)
      : tile(p), fallback(reinterpret_cast<const T*>(p.k)), tid(tid_) {
    tile.template load_kv<Sw128Layout, D, THREADS>(p, sK, sV, tid);
  }
  __device__ __forceinline__ void operator()(T* dst, const T* src, long long row_stride, int rows) const {
    load_tile_sw128<BM, D, THREADS>(dst, src, row_stride, rows, fallback, tid);
  }
};

template <typename T, int D>
__device__ __forceinline__ void bwd_kernel(const distca_bwd_params_t& p) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = BwdSm90Config<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, THREADS = Cfg::kThreads;
  constexpr int NKV = D / 8;  // n8 blocks of dK/dV
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert((D == 64 || D == 128) && BM == 64, "head_dim 64 or 128, whole 64-column swizzle blocks");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + Cfg::kSmemKV;
  T* sQ = sV + Cfg::kSmemKV;       // [2][BM][D]
  T* sdO = sQ + 2 * Cfg::kSmemQ;   // [2][BM][D]
  T* sdS = sdO + 2 * Cfg::kSmemQ;  // [BN keys][BM queries]: dS^T
  float* sLse = reinterpret_cast<float*>(sdS + Cfg::kSmemP);  // [2][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + 2 * BM;                               // [2][BM]

  const int tid = threadIdx.x;
  const int wg = tid >> 7;             // warpgroup: keys [64 wg, 64 wg + 64)
  const int wrow = wgmma_acc_row(tid);  // first of this thread's 2 rows in the 64
  const int quad = tid & 3;
  const BwdCtaLoads<BM, BN, D, THREADS, T> load_qdo(p, sK, sV, tid);
  const BwdTile<BN>& tile = load_qdo.tile;
  const int group = tile.group, head_kv = tile.head_kv;
  const int kb0 = tile.kb0;

  float acc_dk[NKV * 4], acc_dv[NKV * 4];
#pragma unroll
  for (int i = 0; i < NKV * 4; ++i) acc_dk[i] = acc_dv[i] = 0.f;

  BwdCursor cur;
  bool have = bwd_begin<BM, BN, D, T>(p, cur, tile, sQ, sdO, sLse, sDsum, tid, load_qdo);

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
    if (have_next) bwd_issue_tile<BM, D, T>(p, next, head_kv, group, sQ, sdO, stage ^ 1, next_lse, next_dsum, tid, load_qdo);
    cp_async_commit();

    const uint32_t aQ = smem_addr(sQ + stage * Cfg::kSmemQ), adO = smem_addr(sdO + stage * Cfg::kSmemQ);
    const float* cLse = sLse + stage * BM;
    const float* cDsum = sDsum + stage * BM;
    bwd_step<T, D>(acc_dk, acc_dv, p, cur, head_kv, group, kb0, aK, aV, aQ, adO, sdS, cLse, cDsum, wg, wrow, quad,
                   scale_log2, [] { __syncthreads(); },
                   [&](const float (&acc_dq)[32], int row0, int hq, int rows) {
                     bwd_dq_atomics<D>(acc_dq, p, row0, hq, rows, wg, wrow, quad);
                   },
                   [] {});
    // The next tile's LSE/D go to the other stage (its readers are past the next iteration's barrier).
    if (have_next && tid < BM) {
      sLse[(stage ^ 1) * BM + tid] = next_lse;
      sDsum[(stage ^ 1) * BM + tid] = next_dsum;
    }

    cur = next;
    have = have_next;
    stage ^= 1;
  }
  cp_async_wait<0>();

  bwd_store_dkdv<T, D>(acc_dk, acc_dv, p, tile, wg, wrow, quad);
#else
  __trap();  // only the sm_90a image has this kernel's body; hosts elsewhere never launch it
#endif
}

}  // namespace sm90
}  // namespace distca
