// Forward on Hopper with warp specialization (head_dim 64, 128 and 256, sm_90a): the work
// decomposition and the consumer arithmetic of fwd_sm90.cuh, but the loads come from a producer
// warpgroup through TMA (cp.async.bulk.tensor) into an mbarrier pipeline, and the registers are
// rebalanced with setmaxnreg (producer 32, 40 at head_dim 256; consumers 232):
//
//   warpgroup 0      one thread issues, per query tile, the Q load into one of two Q buffers (one at
//                    head_dim 256, given back after a tile's last S GEMM: kEarlyQ) and,
//                    per key block, the K load into one of three K stages (two at head_dim 256)
//                    and the V load into one of two V stages, each once its stage is empty (one
//                    box per 64 columns, 128-byte swizzle: exactly the layout of sw128<ROWS>);
//                    at head_dim 64 each V load goes out after the next block's K (the consumers'
//                    order);
//                    a thread of its second warp (the scheduler) claims the next tile and reads its
//                    records while the first waits for the tile's last stage; a thread of its third
//                    warp (the store thread) sends a full tile's staged O out by TMA (head_dim
//                    64 and 128)
//   warpgroups 1, 2  rows [0, 64) and [64, 128) of the query tile, software-pipelined by one key
//                    block: block b + 1's S = Q K^T is issued before block b's O += P V, and its
//                    mask and online softmax run while those GEMMs do (FA3's intra-warpgroup
//                    overlap; NOTES v19); each stage is marked empty once its GEMMs are done;
//                    at head_dim 64 warpgroup 2 issues a tile's first S GEMM once
//                    warpgroup 1's is complete (NOTES v44); at head_dim 128 warpgroup 2 leaves a
//                    tile of at most 64 rows to warpgroup 1 (NOTES v46)
//
// Persistent: CTA b runs tile b, then the tiles a global counter hands out in work-list order
// (longest first), so that the CTAs balance like the hardware's own block scheduler would (a
// static split of the tiles does not: causal tiles differ in length by up to the sequence's
// block count). Any grid of at least one CTA is correct; hosts launch one CTA per SM, at most one
// per tile. The producer fetches the tiles and passes each one's slice, block and head to the
// consumers in a shared-memory slot beside its Q buffer, released before the Q load so that they
// set the tile up while Q lands (two Q buffers, NOTES v47), and they wait on no global load. The
// K/V stage ring and the Q buffers run on across tiles, so the producer loads the next tile's Q
// and first key blocks while the consumers finish this one: the per-tile start-up (load latency,
// CTA launch) is hidden, which is what short query tiles (rebatched shards, short sequences) pay
// most for. O leaves through the consumers' rows of the tile's Q buffer (fwd_epilogue_staged):
// stored from there by the consumers, or, for full tiles at head_dim 64 and 128, by a TMA store
// that the store thread issues (fwd_o_by_tma). With one Q buffer (head_dim 256) the consumers give
// Q back once the tile's last S GEMM is done and stage O in the last key block's K and V stages
// instead (kEarlyQ, NOTES v91), so that the next tile's Q loads under the last P V and the epilogue.
//
// The host encodes four tensor maps (Q, K, V, O as [rows][heads][D] bf16/fp16, boxes of 64 columns
// x 1 head x 128 rows, 128-byte swizzle) with cuTensorMapEncodeTiled and passes them in the
// parameter block after distca_fwd_params_t (distca_fwd_ws_params_t, distca_attn.h).
#pragma once

#include "fwd_sm90.cuh"
#include "trace.cuh"

// Key rows per block of the head_dim 256 warp-specialized forward: 80 (NOTES v49; 64 before, 8-15%
// slower from 2K tokens). Not a build option: the hosts encode the K/V boxes with as many rows
// (distca_attn.h section 7, ABI version 4; DistcaAttnAbiTest reads this line).
#define DISTCA_FWD_WS_D256_BN 80

namespace distca {
namespace sm90 {

template <int D>
struct FwdWsConfig {
  // K is read a block ahead of V (the next block's S GEMM runs beside this block's P V): three K
  // stages, two V stages. head_dim 256 (NOTES v40, v49): 80-key blocks (O's 128 accumulator
  // registers leave room for S and P of 80 keys, not 128; each S GEMM k-step then reads 25% more
  // of K per read of Q than at 64), two K stages (64 KiB of Q and four 40 KiB stages fill the 227
  // KiB) and one Q buffer (a second 64 KiB one does not fit beside the stages), so that a tile's Q
  // loads once the previous tile's O has left the buffer.
  static constexpr int BM = 128, BN = D == 256 ? DISTCA_FWD_WS_D256_BN : 128;
  static constexpr int kKStages = D == 256 ? 2 : 3, kVStages = 2;
  static constexpr int kQBuffers = D == 256 ? 1 : 2;
  static constexpr int kThreads = 384;  // a producer warpgroup and two consumer warpgroups
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemKV = BN * D;
  // the Q buffers, the K and V stages, the mbarriers, the two tile slots and the claim slot, plus
  // 1 KiB for the 1024-byte alignment of the tiles
  static constexpr int kSmemBytes = (kQBuffers * kSmemQ + (kKStages + kVStages) * kSmemKV) * 2 + 512 + 1024;
};

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred P1;\n"
      "LAB_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@P1 bra DONE;\n"
      "bra LAB_WAIT;\n"
      "DONE:\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// The two consumer warpgroups staggered on mbarrier `bar` (arrived at by warpgroup 0's 128
// threads, NOTES v44-v45): warpgroup 1 waits for the phase of `parity`, warpgroup 0 for the phase
// before, which is complete, so that both run the same code and no branch surrounds it. The caller
// keeps warpgroup 0 from completing a later phase of the same parity before warpgroup 1 has waited.
__device__ __forceinline__ void stagger_wait(uint32_t bar, uint32_t parity, int wg) {
  mbar_wait(bar, parity ^ (wg == 0));
}
// A 3-D tile (columns c0.., head c1, rows c2..) of the tensor map into shared memory at dst,
// completing `bar`'s transaction count.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
      "l"(tmap), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// A box of the tensor map (columns c0.., head c1, rows c2..) from shared memory at src into global
// memory, as one bulk-async group member.
__device__ __forceinline__ void tma_store_3d(const void* tmap, uint32_t src, int c0, int c1, int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(tmap),
               "r"(src), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Waits until at most N bulk groups of this thread still read their shared-memory source.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// The tile of tma_load_3d's coordinates into L2 only (no shared memory, no barrier).
__device__ __forceinline__ void tma_prefetch_3d(const void* tmap, int c0, int c1, int c2) {
  asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global.tile [%0, {%1, %2, %3}];\n" ::"l"(tmap), "r"(c0), "r"(c1),
               "r"(c2)
               : "memory");
}

// A named barrier over the 128 threads of consumer warpgroup wg (ids 2 and 3; bar_sync_256 below
// holds both consumer warpgroups at another).
__device__ __forceinline__ void warpgroup_sync(int wg) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(2 + wg) : "memory");
}
// Named barrier ID over both consumer warpgroups (256 threads), which the caller waits at (sync) or
// only arrives at (arrive); IDs other than 0 (__syncthreads) and warpgroup_sync's 2 and 3.
template <int ID>
__device__ __forceinline__ void bar_sync_256() {
  static_assert(ID != 0 && ID != 2 && ID != 3, "0 is __syncthreads', 2 and 3 warpgroup_sync's");
  asm volatile("bar.sync %0, 256;\n" ::"n"(ID) : "memory");
}
template <int ID>
__device__ __forceinline__ void bar_arrive_256() {
  static_assert(ID != 0 && ID != 2 && ID != 3, "0 is __syncthreads', 2 and 3 warpgroup_sync's");
  asm volatile("bar.arrive %0, 256;\n" ::"n"(ID) : "memory");
}

// The head dims up to which the forward's S GEMMs take Q's A fragments from registers (NOTES v30):
// 64 (at 128 they spill).
#ifndef DISTCA_FWD_Q_FRAG_MAX_D
#define DISTCA_FWD_Q_FRAG_MAX_D 64
#endif
// The head dims up to which the forward's prologue issues two S GEMMs back to back (NOTES v21):
// 64 (128 reproduces the variant that lost at head_dim 128).
#ifndef DISTCA_FWD_TWO_S_PROLOGUE_MAX_D
#define DISTCA_FWD_TWO_S_PROLOGUE_MAX_D 64
#endif
// The head dims up to which the producer issues each V load one key block behind its K (NOTES v43):
// 64. At 128 it read 1.00 except causal 512 (-1 to -3%).
#ifndef DISTCA_FWD_V_LAG_MAX_D
#define DISTCA_FWD_V_LAG_MAX_D 64
#endif
// The head dim at which the second consumer warpgroup (wg 1) issues a tile's first S GEMM only once
// the first's is complete, so that the first's (masked) softmax of it runs under the second's GEMM
// (NOTES v44): 64 (0: none). At 128 the two warpgroups then stay about a GEMM apart and the steady
// state loses 9% (the lockstep order, both S GEMMs before both P V, is what the d128 loop runs
// fastest in). At 256 it paid with 64-key blocks (v44); with v49's 80-key ones, leaving it out is
// 1.5-2.4% faster from 8K tokens and on the fused shards, 2-4% slower at 512-1K (NOTES v50).
#ifndef DISTCA_FWD_STAGGER_D
#define DISTCA_FWD_STAGGER_D 64
#endif
// The head dim at which warpgroup 1 leaves tiles of at most 64 rows, which have none of its rows,
// to warpgroup 0 (NOTES v46): 128 (0: none). At 64 and 256 an earlier form of it (the pass-on loop
// inline) read 0.977-1.001 and 0.975-0.996 (one round each).
#ifndef DISTCA_FWD_ALONE_D
#define DISTCA_FWD_ALONE_D 128
#endif
// The key blocks the producer loads before a tile's Q where there is one Q buffer (head_dim 256):
// 0 since v91's early Q (NOTES v91: +0.6-1.2% at causal 512-2K against 1); 1 before it (NOTES v90:
// causal 512 +2-4%, non-causal 512 +3.4% against v40's 2).
#ifndef DISTCA_FWD_D256_PRE_BLOCKS
#define DISTCA_FWD_D256_PRE_BLOCKS 0
#endif
// Whether, with one Q buffer (head_dim 256), the consumers give Q back as soon as a tile's last S GEMM
// is done and stage O in the last key block's K stage (warpgroup 0) and V stage (warpgroup 1),
// released once O has left, so that the next tile's Q loads under the last P V and the epilogue
// (NOTES v91): 1.
#ifndef DISTCA_FWD_EARLY_Q
#define DISTCA_FWD_EARLY_Q 1
#endif
// Whether head_dim 64's full tiles send O by the store thread's TMA as well (NOTES v93: +0.5-3%
// everywhere on an H200; v18's kernel lost 1% on the long sequence that way): 1.
#ifndef DISTCA_FWD_TMA_O_D64
#define DISTCA_FWD_TMA_O_D64 1
#endif
#ifndef DISTCA_FWD_TMA_O_MIN_BLOCKS
#define DISTCA_FWD_TMA_O_MIN_BLOCKS 1
#endif
// Whether the tile of slice sl starting at row m0 sends its O out by TMA, issued by the store thread
// once the consumers have staged it (so that they go on to the next tile ~1,000 cycles earlier),
// rather than by the consumers' own stores. Only full tiles (the TMA box is BM rows: a partial
// tile's would write into the next slice's rows) of at least DISTCA_FWD_TMA_O_MIN_BLOCKS key
// blocks, at head_dim 128 (NOTES v18) and, since v93, 64 (not at 256, whose O leaves through the
// last key block's stages: kEarlyQ). Since v56 every full tile (1 block): with v18's kernel tiles
// of two to four blocks lost 2-3% at causal 512 that way, with v52's they gain (causal 512 +1-8%, 1K
// +2-5%).
// The head dims whose kernels have the store thread.
template <int D>
constexpr bool kFwdTmaO = D == 128 || (D == 64 && DISTCA_FWD_TMA_O_D64);
template <int D, int BM, int BN>
__device__ __forceinline__ bool fwd_o_by_tma(const distca_slice_t& sl, int m0) {
  return kFwdTmaO<D> && sl.q_len - m0 >= BM && fwd_key_end(sl, m0, BM) > (DISTCA_FWD_TMA_O_MIN_BLOCKS - 1) * BN;
}

// A hook that does nothing (fwd_epilogue_staged's default).
struct NoMark {
  __device__ __forceinline__ void operator()() const {}
};

// fwd_epilogue through shared memory: the warpgroup's normalized 64 x D rows go to its rows of
// `stage` (a BM x D tile in the 128-byte swizzle, conflict-free for the fragment stores), then,
// unless `by_tma` (the store thread sends the staged tile), each warp sends its own 16 rows out as
// 16-byte stores of whole row segments (8 threads write 128 contiguous bytes). The fragments
// stored straight from registers, 4 bytes per row and thread, cost the forward 4% on rebatched
// shards and 30% at causal 512 (NOTES v12). `stage` must hold no operand of a GEMM in flight.
// `staged()` runs after the first half (a trace probe).
// (SR = 64: `stage` holds this warpgroup's 64 rows only, a 64 x D sw128 tile, row r of the query tile at
// its row r - 64 wg.)
template <typename T, int D, int BM, typename Mark = NoMark, int SR = BM>
__device__ __forceinline__ void fwd_epilogue_staged(const float (&acc_o)[D / 8 * 4], const float (&row_max)[2],
                                                    const float (&row_sum)[2], float scale, int wg, int wrow,
                                                    int quad, int rows, T* gO, long long q_stride, float* gLse,
                                                    T* stage, int wtid, bool by_tma, Mark staged = Mark()) {
  static_assert(SR == BM || SR == 64, "the query tile's rows, or one warpgroup's");
  const int sr0 = SR == BM ? 0 : wg * 64;  // the stage's first row
  fwd_finish<T, D>(acc_o, row_max, row_sum, scale, wg, wrow, quad, rows, gLse, [&](int r, int c, uint32_t bits) {
    *reinterpret_cast<uint32_t*>(stage + sw128<SR>(r - sr0, c)) = bits;
  });
  staged();
  if (by_tma) return;
  // a warp's fragments are its own 16 rows: it reads back what it wrote
  __syncwarp();
  constexpr int CH = D / 8;  // 16-byte chunks per row
  const int lane = wtid & 31, r0 = wg * 64 + (wtid >> 5) * 16;
#pragma unroll
  for (int k = lane; k < 16 * CH; k += 32) {
    const int r = r0 + k / CH, c = (k % CH) * 8;
    if (r < rows) *reinterpret_cast<uint4*>(gO + r * q_stride + c) = *reinterpret_cast<const uint4*>(stage + sw128<SR>(r - sr0, c));
  }
}

#ifdef DISTCA_TRACE_PROBES
// The forward's trace events (trace.cuh; trace.py --pass fwd), numbered apart from the backward's
enum FwdTraceEvent {
  kFtQWait = 32, kFtQReady, kFtFullWait, kFtFullReady, kFtStepEnd /* arg 1: masked block */, kFtEpiEnd, kFtExit,
  kFtSetupEnd, kFtEpiStaged, kFtEpiStored,
  // producer
  kFtPQWait = 48, kFtPQIssue /* arg: the tile's key blocks (at most 255) */, kFtPKvWait, kFtPKvIssue /* arg: block */
};
#endif

// The persistent kernels' next tile after tile t (distca_attn.h section 7): from the tile counter
// in work-list order, or t + gridDim.x where there is none.
__device__ __forceinline__ int next_tile(int* counter, int t) {
  return counter != nullptr ? (int)gridDim.x + atomicAdd(counter, 1) : t + (int)gridDim.x;
}

// Stage uses [it, it + n) waited for full and released, in order (warpgroup 1 on a tile of at most
// 64 rows, NOTES v46); stage s's barriers lie s mbarrier words after k_full (k_empty, ...). Out of
// line, so that the consumers' main path keeps its schedule: inline, this loop cost causal 2048
// 0.6-1.1%.
template <int KS, int VS>
__device__ __noinline__ void fwd_pass_on(uint32_t k_full, uint32_t k_empty, uint32_t v_full, uint32_t v_empty,
                                         int it, int n) {
  constexpr uint32_t kWord = sizeof(uint64_t);  // one mbarrier
  for (int i = it; i < it + n; ++i) {
    mbar_wait(k_full + kWord * (i % KS), (i / KS) & 1);
    mbar_arrive(k_empty + kWord * (i % KS));
    mbar_wait(v_full + kWord * (i % VS), (i / VS) & 1);
    mbar_arrive(v_empty + kWord * (i % VS));
  }
}

template <typename T, int D>
__device__ __forceinline__ void fwd_ws_kernel(const distca_fwd_ws_params_t& P) {
#ifdef DISTCA_SM90_WGMMA
  using Cfg = FwdWsConfig<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN;
  constexpr int NO = D / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert(D == 64 || D == 128 || D == 256, "head_dim 64, 128 or 256: whole 64-column boxes");
  const distca_fwd_params_t& p = P.base;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_aligned_1k(smem_raw);
  T* sQ = reinterpret_cast<T*>(smem);         // [QB][BM][D]
  constexpr int KS = Cfg::kKStages, VS = Cfg::kVStages;
  constexpr int QB = Cfg::kQBuffers;
  T* sK = sQ + QB * Cfg::kSmemQ;  // [KS][BN][D]
  T* sV = sK + KS * Cfg::kSmemKV;  // [VS][BN][D]
  uint64_t* bars = reinterpret_cast<uint64_t*>(sV + VS * Cfg::kSmemKV);
  constexpr int kBars = 4 + 2 * KS + 2 * VS;
  // [2]: the tile of Q buffer b (head < 0: no more tiles)
  FwdTileRef* tile_slot = reinterpret_cast<FwdTileRef*>(bars + kBars);
  auto bar_q_full = [&](int b) { return smem_addr(bars + b); };
  auto bar_q_empty = [&](int b) { return smem_addr(bars + 2 + b); };
  auto bar_k_full = [&](int s) { return smem_addr(bars + 4 + s); };
  auto bar_k_empty = [&](int s) { return smem_addr(bars + 4 + KS + s); };
  auto bar_v_full = [&](int s) { return smem_addr(bars + 4 + 2 * KS + s); };
  auto bar_v_empty = [&](int s) { return smem_addr(bars + 4 + 2 * KS + VS + s); };
  // after the two tile slots: the claim slot (the scheduler's next tile; padded to whole mbarrier
  // words) and its two mbarriers
  struct Claim {
    FwdTileRef ref;
    int t, pad;
  };
  Claim* claim_slot = reinterpret_cast<Claim*>(tile_slot + 2);
  uint64_t* claim_bars = reinterpret_cast<uint64_t*>(claim_slot + 1);
  const uint32_t bar_claim_req = smem_addr(claim_bars), bar_claim_done = smem_addr(claim_bars + 1);
  // [2]: Q buffer b holds its tile's O (or the tile needs no store from it)
  auto bar_o_staged = [&](int b) { return smem_addr(claim_bars + 2 + b); };
  // [2]: (kStagger) warpgroup 0's first S GEMM of the tile in Q buffer b is complete
  auto bar_s0_done = [&](int b) { return smem_addr(claim_bars + 4 + b); };
  // [2]: tile_slot[b] holds the tile of Q buffer b's next phase (arrived at before its Q load)
  auto bar_slot = [&](int b) { return smem_addr(claim_bars + 6 + b); };
  static_assert(sizeof(FwdTileRef) % 8 == 0 && sizeof(Claim) % 8 == 0 &&
                    (kBars + 8) * 8 + 2 * sizeof(FwdTileRef) + sizeof(Claim) <= 512,
                "the mbarrier and slot area (kSmemBytes)");

  const int tid = threadIdx.x;
  const int tiles = p.num_work * p.heads_q;
  // Whether the consumers set a tile up before its Q has landed (NOTES v47): with two Q buffers
  // (head_dim 64, 128). With one (256), whose Q loads once the previous tile's O has left, causal
  // 512 read 0.95 in one round.
  constexpr bool kEarlySetup = QB == 2;
  constexpr bool kStoreThread = kFwdTmaO<D>;  // fwd_o_by_tma
  constexpr bool kDA = kFwdDescAdd<D>;  // (desc_k_major's kAdd)
  constexpr bool kEarlyQ = QB == 1 && DISTCA_FWD_EARLY_Q;  // O through the last block's K and V stages

  if (tid == 0) {
    for (int b = 0; b < 2; ++b) {
      mbar_init(bar_q_full(b), 1);
      // every consumer thread once its last GEMM on Q and its O stores (or staging) are done, and
      // the store thread (at the tile's start, or once its TMA store has read the buffer)
      mbar_init(bar_q_empty(b), kStoreThread ? 257 : 256);
      mbar_init(bar_o_staged(b), 256);  // every consumer thread, once its O rows are staged
      mbar_init(bar_s0_done(b), 128);   // every thread of consumer warpgroup 0
      mbar_init(bar_slot(b), 1);        // (kEarlySetup) the producer
    }
    for (int s = 0; s < KS; ++s) {
      mbar_init(bar_k_full(s), 1);
      mbar_init(bar_k_empty(s), 256);  // every consumer thread, once its S GEMM on the stage is done
    }
    for (int s = 0; s < VS; ++s) {
      mbar_init(bar_v_full(s), 1);
      mbar_init(bar_v_empty(s), 256);  // every consumer thread, once its P V GEMMs on the stage are done
    }
    mbar_init(bar_claim_req, 1);
    mbar_init(bar_claim_done, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // The j-th tile of this CTA uses Q buffer j % QB (its slice, block and head in tile_slot[j % QB];
  // head -1 after the last); the it-th key block overall uses K stage it % KS and V stage it % VS.
  // Phases are counted on from tile to tile.
  if (tid < 128) {
    // ---- producer
    // 32 registers; 40 at head_dim 256, whose producer also loads a tile's first key blocks before
    // its Q (at 32 it spilled 52 bytes), the consumers keeping 232 (128 x 40 + 256 x 232 <= 64 Ki)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(D == 256 ? 40 : 32));
    if (tid == 0) {
      constexpr uint32_t kTileBytes = BN * D * 2;
#ifdef DISTCA_TRACE_PROBES
      const int lane = tid;
      Trace<true> tr;
#endif
      int it = 0;
      int t = blockIdx.x;
      FwdTileRef next = t < tiles ? fwd_tile_ref(p, t, P.band_end) : FwdTileRef{};
      // (kVLag) V loads one key block behind K, which is the consumers' order (block b + 1's S GEMM
      // is issued before block b's P V): a block's V is issued after the next block's K, the next
      // tile's if it is the last, so that the next tile's Q and first K go out before it. The V
      // load still to issue: overall key block it_v (< 0: none), its rows and KV head.
      constexpr bool kVLag = D <= DISTCA_FWD_V_LAG_MAX_D && QB == 2;
      // BN rows from `row` on (KV head `head_kv`) of K or V, for overall key block i, into stage
      // i % depth once it is empty
      auto load_rows = [&](T* base, const void* tmap, uint32_t full, uint32_t empty, int i, int depth, int head_kv,
                           int row) {
        if (i >= depth) mbar_wait(empty, ((i / depth) - 1) & 1);
        mbar_expect_tx(full, kTileBytes);
#pragma unroll
        for (int h = 0; h < D / 64; ++h)
          tma_load_3d(smem_addr(base + (i % depth) * Cfg::kSmemKV + h * BN * 64), tmap, full, h * 64, head_kv, row);
      };
      int it_v = -1, v_row = 0, v_head = 0;
      auto flush_v = [&] {
        if (!kVLag || it_v < 0) return;
        load_rows(sV, P.tmap_v, bar_v_full(it_v % VS), bar_v_empty(it_v % VS), it_v, VS, v_head, v_row);
        it_v = -1;
      };
      for (int j = 0;; ++j) {
        const int qb = j % QB;
        const bool done = t >= tiles;
        const FwdTile<T, D, BM> tile(p, next);
        const int n_end = done ? 0 : fwd_key_end(tile.sl, tile.m0, tile.rows);
        const int n_blocks = (n_end + BN - 1) / BN;
        // key block b's K and V rows into their stages, each once it is empty; the next tile is
        // claimed while this thread waits for the last block's stages
        auto load_block = [&](int b) {
          const int sk = it % KS, sv = it % VS;
          if (b == n_blocks - 1) mbar_arrive(bar_claim_req);
          const int k_row = tile.sl.k_start + (n_blocks - 1 - b) * BN;
          DISTCA_TRACE_P(tr.rec(kFtPKvWait, min(b, 255)));
          load_rows(sK, P.tmap_k, bar_k_full(sk), bar_k_empty(sk), it, KS, tile.head_kv, k_row);
          if constexpr (kVLag) {
            flush_v();
            it_v = it;
            v_row = k_row;
            v_head = tile.head_kv;
          } else {
            load_rows(sV, P.tmap_v, bar_v_full(sv), bar_v_empty(sv), it, VS, tile.head_kv, k_row);
          }
          DISTCA_TRACE_P(tr.rec(kFtPKvIssue, min(b, 255)));
          ++it;
        };
        // With one Q buffer (head_dim 256) the tile's first DISTCA_FWD_D256_PRE_BLOCKS key blocks
        // load before its Q, which waits until the buffer is back (kEarlyQ: after the previous
        // tile's last S GEMM).
        const int pre = QB == 1 ? min(n_blocks, DISTCA_FWD_D256_PRE_BLOCKS) : 0;
        for (int b = 0; b < pre; ++b) load_block(b);
        DISTCA_TRACE_P(tr.rec(kFtPQWait));
        if (j >= QB) mbar_wait(bar_q_empty(qb), ((j / QB) - 1) & 1);
        if (done) {
          tile_slot[qb].head = -1;
          if constexpr (kEarlySetup) mbar_arrive(bar_slot(qb));
          mbar_arrive(bar_q_full(qb));  // released by the arrive: the consumers stop
          flush_v();
          break;
        }
        tile_slot[qb] = next;
        if constexpr (kEarlySetup) mbar_arrive(bar_slot(qb));  // release: the consumers set up while Q loads
        if (n_end == 0) {
          mbar_arrive(bar_q_full(qb));  // no keys: the consumers write O = 0, LSE = -inf
        } else {
          mbar_expect_tx(bar_q_full(qb), BM * D * 2);
          const int q_row = tile.sl.q_start + tile.m0;
#pragma unroll
          for (int h = 0; h < D / 64; ++h)
            tma_load_3d(smem_addr(sQ + qb * Cfg::kSmemQ + h * BM * 64), P.tmap_q, bar_q_full(qb), h * 64, tile.head,
                        q_row);
          DISTCA_TRACE_P(tr.rec(kFtPQIssue, min(n_blocks, 255)));
          for (int b = pre; b < n_blocks; ++b) load_block(b);
        }
        if (n_end == 0) {
          // no K load to issue the held V after, and the next tile's Q waits for the Q buffer of the
          // tile that V belongs to (the one before this keyless tile)
          flush_v();
          mbar_arrive(bar_claim_req);
        }
        mbar_wait(bar_claim_done, j & 1);
        t = claim_slot->t;
        next = claim_slot->ref;
      }
      DISTCA_TRACE_P(tr.done());
    } else if (tid == 32) {
      // The scheduler warp's lane 0: the j-th request (the producer's, as it starts the wait for
      // its tile's last key block) claims the CTA's next tile and reads its records, so that the
      // claim's three dependent global round trips (atomic, work item, slice) run under that wait
      // instead of between the tile's last K/V load and the next Q load (NOTES v17). That is one
      // key block earlier than before, which leaves the counter's balance as it was (a CTA that
      // claimed a whole tile ahead lost 4% at causal 16K); the Q load itself stays behind the
      // tile's last K/V, which it would delay.
      int* counter = reinterpret_cast<int*>(P.tile_counter);
      int t = blockIdx.x;
      for (int j = 0; t < tiles; ++j) {
        mbar_wait(bar_claim_req, j & 1);
        t = next_tile(counter, t);
        if (t < tiles) claim_slot->ref = fwd_tile_ref(p, t, P.band_end);
        claim_slot->t = t;
        mbar_arrive(bar_claim_done);
      }
    } else if (kStoreThread && tid == 64) {
      // The store thread: the O of a tile that fwd_o_by_tma picks leaves its Q buffer by TMA once
      // the consumers have staged it there, and the buffer goes back to the producer once the store
      // has read it; for any other tile (stored by the consumers) this thread's share of the
      // buffer's release is given at once, so that it adds no latency.
      uint32_t staged_phases = 0;  // bit b: the phase of bar_o_staged(b), which only TMA tiles complete
      for (int j = 0;; ++j) {
        const int qb = j % QB;
        mbar_wait(bar_q_full(qb), (j / QB) & 1);
        const FwdTileRef ref = tile_slot[qb];
        if (ref.head < 0) break;
        const int m0 = ref.block * BM;
        if (fwd_o_by_tma<D, BM, BN>(ref.sl, m0)) {
          mbar_wait(bar_o_staged(qb), (staged_phases >> qb) & 1);
          staged_phases ^= 1u << qb;
#pragma unroll
          for (int h = 0; h < D / 64; ++h)
            tma_store_3d(P.tmap_o, smem_addr(sQ + qb * Cfg::kSmemQ + h * BM * 64), h * 64, ref.head,
                         ref.sl.q_start + m0);
          bulk_commit();
          bulk_wait_read<0>();
        }
        mbar_arrive(bar_q_empty(qb));
      }
      bulk_wait<0>();
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int ctid = tid - 128;
  constexpr bool kAlone = D == DISTCA_FWD_ALONE_D;
  // The warpgroup through a shuffle, so that ptxas knows it uniform over the warp (as CUTLASS's
  // canonical_warp_group_idx): (kAlone) a branch on it is no divergent path around the GEMMs, and at
  // head_dim 64 the image is 0.2-0.7% faster (NOTES v98). Not at 256: 56 more bytes of spills, 0.73-0.98.
  const int wg = D != 256 ? __shfl_sync(0xffffffffu, ctid >> 7, 0) : ctid >> 7;
  const int wrow = wgmma_acc_row(ctid);
  const int quad = ctid & 3;
  const float scale_log2 = p.scale * kLog2e;
  int it = 0;
  constexpr bool kStagger = D == DISTCA_FWD_STAGGER_D;
  uint32_t s0_phases = 0;  // (kStagger) bit b: the phase of bar_s0_done(b) to wait for
#ifdef DISTCA_TRACE_PROBES
  Trace<> tr;
#endif
  for (int j = 0;; ++j) {
    const int qb = j % QB;
    DISTCA_TRACE(tr.rec(kFtQWait));
    // (kEarlySetup) The tile's set-up runs while its Q loads (NOTES v47): the slot is written and
    // released before the Q load is issued, and Q is waited for just before its first GEMM. Every
    // path waits for bar_q_full's phase (a wait two phases ahead of a pending one would read as
    // complete).
    mbar_wait(kEarlySetup ? bar_slot(qb) : bar_q_full(qb), (j / QB) & 1);
    DISTCA_TRACE(tr.rec(kFtQReady));
    auto wait_q = [&] {
      if constexpr (kEarlySetup) mbar_wait(bar_q_full(qb), (j / QB) & 1);
    };
    const FwdTileRef ref = tile_slot[qb];  // the producer's copy: no global loads on this path
    if (ref.head < 0) break;
    const FwdTile<T, D, BM> tile(p, ref);
    const distca_slice_t& sl = tile.sl;
    const int m0 = tile.m0, rows = tile.rows;
    const int n_end = fwd_visible_keys<D, 256>(sl, m0, rows, tile.gO, tile.q_stride, tile.gLse, ctid);
    if (n_end == 0) {
      wait_q();
      mbar_arrive(bar_q_empty(qb));
      continue;
    }
    const int n_blocks = (n_end + BN - 1) / BN;
    // A tile of at most 64 rows (a document's or a slice's tail) has none in warpgroup 1's half:
    // warpgroup 0 runs its GEMMs alone on the tensor pipe, and warpgroup 1 only passes the tile's
    // stages on, each once it is full (which keeps its arrivals in the phase they are for: the fill
    // came after the release of the stage's previous use), then goes on to the next tile (NOTES
    // v46). `alone` goes through a shuffle, as `wg`: ptxas then knows the branch uniform over each
    // warp, and the GEMMs after it keep their schedule (on the per-thread values, the branch cost
    // every shape 17-24%).
    const bool alone = kAlone && __shfl_sync(0xffffffffu, rows, 0) <= 64;
    if (alone && wg == 1) {
      if constexpr (kStagger) s0_phases ^= 1u << qb;  // warpgroup 0 still completes this tile's phase
      fwd_pass_on<KS, VS>(bar_k_full(0), bar_k_empty(0), bar_v_full(0), bar_v_empty(0), it, n_blocks);
      wait_q();
      it += n_blocks;
      mbar_arrive(bar_q_empty(qb));
      continue;
    }
    float acc_o[NO * 4];
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
    const uint32_t aQ = smem_addr(sQ + qb * Cfg::kSmemQ);
    const long long row_limit0 = (long long)m0 + wg * 64 + wrow + sl.diagonal;
    const long long tile_min_limit = (long long)m0 + sl.diagonal;
    DISTCA_TRACE(tr.rec(kFtSetupEnd));
    wait_q();
    // (head_dim <= DISTCA_FWD_Q_FRAG_MAX_D) this warpgroup's Q rows as the S GEMMs' A fragments
    constexpr bool kQFrag = D <= DISTCA_FWD_Q_FRAG_MAX_D;
    uint32_t q_frag[kQFrag ? D / 16 : 1][4];
    if constexpr (kQFrag) load_a_frag<D, BM>(q_frag, sQ + qb * Cfg::kSmemQ, wg, wrow, quad);
    // Block b (keys from (n_blocks - 1 - b) BN) uses K stage (it + b) % KS and V stage (it + b) % VS.
    // Software-pipelined: block b + 1's S GEMM is issued before block b's P V GEMMs, and its
    // softmax runs while they do (FA3's intra-warpgroup overlap).
    float sc[BN / 8 * 4];      // S, then P (fp32) of the block ahead
    uint32_t pa[BN / 16][4];   // P of the block whose P V is next, packed
    float alpha[2], part[2];
    // block b's S GEMM into acc (sc, or the prologue's second S)
    auto issue_s_into = [&](float(&acc)[BN / 8 * 4], int b) {
      const int i = it + b;
      DISTCA_TRACE(tr.rec(kFtFullWait));
      mbar_wait(bar_k_full(i % KS), (i / KS) & 1);
      DISTCA_TRACE(tr.rec(kFtFullReady));
      const uint32_t aK = smem_addr(sK + (i % KS) * Cfg::kSmemKV);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        if constexpr (kQFrag)
          Mma<T>::template rs<BN, 0>(acc, q_frag[kk], desc_k_major<BN, kDA>(aK, 0, kk), kk > 0);
        else
          Mma<T>::template ss<BN, 0, 0>(acc, desc_k_major<BM, kDA>(aQ, wg * 64, kk), desc_k_major<BN, kDA>(aK, 0, kk), kk > 0);
      }
      wgmma_commit();
    };
    auto issue_s = [&](int b) { issue_s_into(sc, b); };
    auto issue_pv = [&](int b) {
      const int i = it + b;
      mbar_wait(bar_v_full(i % VS), (i / VS) & 1);
      const uint32_t aV = smem_addr(sV + (i % VS) * Cfg::kSmemKV);
      fence_regs(pa);
      fence_regs(acc_o);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) fwd_pv_step<T, D, BN>(acc_o, pa[kk], aV, kk);
      wgmma_commit();
    };
    // sc holds block b's S, complete: mask, new row maxima (alpha), P in place, its row sums
    auto softmax_of = [&](float(&s)[BN / 8 * 4], int b) {
      fence_regs(s);
      fwd_softmax_in_place<BN>(s, row_max, alpha, part, (n_blocks - 1 - b) * BN, sl, row_limit0, tile_min_limit,
                               quad, scale_log2);
    };
    auto softmax = [&](int b) { softmax_of(sc, b); };
    // P (in s) packed for its P V GEMMs
    auto pack_p = [&](const float(&s)[BN / 8 * 4]) {
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int j = 2 * kk + jj;
            pa[kk][jj * 2 + h] = Elem<T>::pack(s[j * 4 + 2 * h], s[j * 4 + 2 * h + 1]);
          }
        }
      }
    };
    // O and the row sums rescaled to block b's maxima, and its P packed
    auto take = [&] {
      fwd_rescale_o(acc_o, alpha);
#pragma unroll
      for (int h = 0; h < 2; ++h) row_sum[h] = row_sum[h] * alpha[h] + part[h];
      pack_p(sc);
    };
    // block b's P V done: its V stage released, then O rescaled to block b + 1's maxima (take)
    auto end_block = [&](int b) {
      wgmma_wait<0>();
      fence_regs(acc_o);
      DISTCA_TRACE(tr.rec(kFtStepEnd, !keys_all_visible(sl, (n_blocks - 1 - b) * BN, BN, tile_min_limit)));
      mbar_arrive(bar_v_empty((it + b) % VS));
      take();
    };
    // The prologue. With kTwoS (head_dim 64; NOTES v21): blocks 0 and 1's S GEMMs back to back
    // (block 0's into s0, block 1's into sc, where the loop expects it), block 0's (masked) softmax
    // under block 1's GEMM, then block 0's P V under block 1's softmax; O starts at zero, so block 0
    // needs no rescale. A tile of one block issues its S GEMM twice and drops the second: a wgmma
    // issued or waited for on one path only makes ptxas serialize them all (C7514), and the second
    // runs under block 0's softmax. Block 0's P is packed only once block 1's S is done (packing it
    // beside two S accumulators in flight left ptxas too few registers at head_dim 128: C7512). At
    // head_dim 128 the same prologue slowed the steady state by 1-5% (the loop's code is the same,
    // its registers and schedule are not), so there block 0's S GEMM runs alone, then its softmax.
    constexpr bool kTwoS = D <= DISTCA_FWD_TWO_S_PROLOGUE_MAX_D;
    int b_first = 0;  // the loop's first block
    // (kStagger) warpgroup 1 waits for warpgroup 0's first S GEMM (keyed tiles only, on both sides).
    // Warpgroup 0 arrives on Q buffer qb's barrier again only once the buffer has held another tile,
    // which needs all 256 consumers' bar_q_empty after this one: warpgroup 1 sees no later phase.
    if constexpr (kStagger) {
      stagger_wait(bar_s0_done(qb), (s0_phases >> qb) & 1, wg);
      s0_phases ^= 1u << qb;
    }
    auto s0_complete = [&] {
      if (kStagger && wg == 0) mbar_arrive(bar_s0_done(qb));
    };
    if constexpr (kTwoS) {
      {
        float s0[BN / 8 * 4];
        issue_s_into(s0, 0);
        issue_s(n_blocks > 1 ? 1 : 0);
        wgmma_wait<1>();
        s0_complete();
        softmax_of(s0, 0);
        wgmma_wait<0>();
        mbar_arrive(bar_k_empty(it % KS));
        if (n_blocks > 1) mbar_arrive(bar_k_empty((it + 1) % KS));
#pragma unroll
        for (int h = 0; h < 2; ++h) row_sum[h] = part[h];
        pack_p(s0);
      }
#pragma unroll
      for (int i = 0; i < NO * 4; ++i) acc_o[i] = 0.f;
      if (n_blocks > 1) {
        issue_pv(0);
        softmax(1);
        end_block(0);
      }
      b_first = 1;
    } else {
#pragma unroll
      for (int i = 0; i < NO * 4; ++i) acc_o[i] = 0.f;
      issue_s(0);
      wgmma_wait<0>();
      s0_complete();
      if (!kEarlyQ || n_blocks > 1) mbar_arrive(bar_k_empty(it % KS));
      else mbar_arrive(bar_q_empty(qb));  // (kEarlyQ) the tile's last S GEMM is done: Q is free
      softmax(0);
      take();
    }
    for (int b = b_first; b < n_blocks - 1; ++b) {
      issue_s(b + 1);
      issue_pv(b);
      wgmma_wait<1>();  // block b + 1's S (its P V may still run)
      if (!kEarlyQ || b + 1 < n_blocks - 1) mbar_arrive(bar_k_empty((it + b + 1) % KS));
      else mbar_arrive(bar_q_empty(qb));  // (kEarlyQ) the tile's last S GEMM is done: Q is free
      softmax(b + 1);
      end_block(b);
    }
    issue_pv(n_blocks - 1);
    wgmma_wait<0>();
    fence_regs(acc_o);
    DISTCA_TRACE(tr.rec(kFtStepEnd, !keys_all_visible(sl, 0, BN, tile_min_limit)));
    const int k_last = (it + n_blocks - 1) % KS, v_last = (it + n_blocks - 1) % VS;  // the last block's stages
    if constexpr (!kEarlyQ) mbar_arrive(bar_v_empty(v_last));
    it += n_blocks;
    // O leaves through this warpgroup's rows of the Q buffer (its own GEMMs on them are done; the
    // other warpgroup's read only its rows), which the producer may refill once the reads are done;
    // (kEarlyQ) through the last key block's K stage (warpgroup 0) or V stage (warpgroup 1) instead
    const FwdTile<T, D, BM> out(p, ref);  // recomputed rather than held in registers across the loop
    const bool by_tma = fwd_o_by_tma<D, BM, BN>(sl, m0);
#ifdef DISTCA_TRACE_PROBES
    auto staged_mark = [&] { DISTCA_TRACE(tr.rec(kFtEpiStaged)); };
#else
    NoMark staged_mark;
#endif
    if constexpr (kEarlyQ) {
      // both warpgroups' last GEMMs on the last block's stages are done before either is written
      bar_sync_256<4>();
      T* stage = wg == 0 ? sK + k_last * Cfg::kSmemKV : sV + v_last * Cfg::kSmemKV;
      fwd_epilogue_staged<T, D, BM, decltype(staged_mark), 64>(acc_o, row_max, row_sum, p.scale, wg, wrow, quad,
                                                                out.rows, out.gO, out.q_stride, out.gLse, stage,
                                                                ctid & 127, false, staged_mark);
      DISTCA_TRACE(tr.rec(kFtEpiStored));
      fence_proxy_async();  // the stages' next TMA loads come after these generic accesses
      mbar_arrive(bar_k_empty(k_last));
      mbar_arrive(bar_v_empty(v_last));
    } else {
      fwd_epilogue_staged<T, D, BM, decltype(staged_mark)>(acc_o, row_max, row_sum, p.scale, wg, wrow, quad, out.rows,
                                                           out.gO, out.q_stride, out.gLse, sQ + qb * Cfg::kSmemQ,
                                                           ctid & 127, by_tma, staged_mark);
      DISTCA_TRACE(tr.rec(kFtEpiStored));
      fence_proxy_async();  // the next TMA access to the buffer (store or load) comes after these generic ones
      if (by_tma) mbar_arrive(bar_o_staged(qb));
      mbar_arrive(bar_q_empty(qb));  // done with this Q buffer (the store thread's arrival may be pending)
    }
    DISTCA_TRACE(tr.rec(kFtEpiEnd));
  }
  DISTCA_TRACE(tr.rec(kFtExit); tr.done());
#else
  __trap();
#endif
}

}  // namespace sm90
}  // namespace distca
