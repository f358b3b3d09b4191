// Backward: FlashAttention-2 style, parallel over key tiles. One CTA per (key tile of a segment,
// key/value head). The warps keep the tile's dK, dV rows in fp32 registers while the
// CTA walks every (slice of the segment, query head of the GQA group, query tile that sees the key
// tile); dQ of each query tile goes to the fp32 workspace with atomics. Shared K/V segments (KV
// dedup) and GQA therefore sum in registers and dK/dV are written once, without atomics.
#pragma once

#include "common.cuh"

namespace distca {

// dq_claims (distca_attn.h section 8): bit 31 of a row's word marks its workspace zeroed by the
// first visitor of its query tile; the low bits of a tile's first row count the visits.
constexpr uint32_t kDqZeroed = 0x80000000u;

template <int D, int BM, int BN, int WARPS>
struct BwdConfig {
  static constexpr int kBlockM = BM, kBlockN = BN;  // for the host (distca_attn_info_t)
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSmemKV = BN * D;  // elements
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemP = BN * BM;
  // K, V, 2 stages of Q, 2 stages of dO, P^T and dS^T (16-bit), then 2 stages of LSE and D (fp32)
  static constexpr int kSmemBytes = (2 * kSmemKV + 4 * kSmemQ + 2 * kSmemP) * 2 + 4 * BM * 4;

  // Warp layouts, as in FlashAttention-2's backward:
  //  phase A  S^T, dP^T (BN keys x BM queries): A_WK warps along keys x 2 along queries
  //  phase B  dV, dK   (BN keys x D):           B_WK warps along keys x WARPS/B_WK along head_dim;
  //                                             these accumulators live in registers all along
  //  phase C  dQ       (BM queries x D):        2 warps along queries x WARPS/2 along head_dim,
  //                                             in C_PASSES passes of at most 32 columns per warp
  // dK + dV take 2 * BN * D / (32 * WARPS) fp32 registers per thread: 128 for the tiles in use.
  static constexpr int A_WK = kWarps / 2, A_WQ = 2;
  static constexpr int B_WK = BN / 32 < kWarps ? BN / 32 : kWarps, B_WD = kWarps / B_WK;
  static constexpr int C_WQ = 2, C_WD = kWarps / C_WQ;
  static constexpr int C_PASSES = D / C_WD > 32 ? D / C_WD / 32 : 1;
  static constexpr int A_MT = BN / A_WK / 16, A_NT = BM / A_WQ / 8;
  static constexpr int B_MT = BN / B_WK / 16, B_NT = D / B_WD / 8;
  static constexpr int C_MT = BM / C_WQ / 16, C_NT = D / C_WD / 8 / C_PASSES;
  static_assert(BM % 64 == 0, "P^T and dS^T are swizzled [BN][BM] tiles: BM must be a multiple of 64");
  static_assert(A_MT >= 1 && A_NT % 2 == 0 && B_MT >= 1 && B_NT % 2 == 0 && C_MT >= 1 && C_NT % 2 == 0,
                "tile does not divide into the warp layouts");
  static_assert(A_MT * 16 * A_WK == BN && A_NT * 8 * A_WQ == BM && B_MT * 16 * B_WK == BN &&
                    B_NT * 8 * B_WD == D && C_MT * 16 * C_WQ == BM && C_NT * 8 * C_WD * C_PASSES == D,
                "warp layouts must cover the tiles exactly");
};

#ifndef DISTCA_BWD_ROTATE
#define DISTCA_BWD_ROTATE 1
#endif

// Where a CTA is in its walk over (slice of the segment, query head of the GQA group, query tile).
// The query tiles of one (slice, head) that see the key tile, [mb_begin, mb_end), are walked
// cyclically from mb_begin + rot % count (DISTCA_BWD_ROTATE), for slices without causal mask: there
// the key tiles of a segment, which run side by side, would all start at query tile 0 and add into
// the same dQ rows at the same moment (+2% at 1K-16K; with causal masks their diagonals already
// stagger them, and rotating cost 8% at 512: NOTES.md v8). rot is the key block's index times
// BN / BM (at least 1), so that the key tiles of a square slice start evenly spread over its query
// tiles, two apart with the warp-specialized tiles rather than next to each other: neighbours then
// met at the same query tile whenever one ran a step ahead, which cost the d64 backward up to 20% at
// non-causal 8K (NOTES.md v36).
// kChunk > 0 (distca_attn.h section 10): that walk in chunks of kChunk query tiles, each chunk for
// every head of the group before the next chunk (the order of the tiles unchanged for one head).
// Head by head over a whole slice, the causal key tiles of a segment drift apart: key tile j spends
// count_j steps on a head, two fewer than key tile j - 1, so the step at which its neighbour reads
// the same Q/dO tile and adds into the same dQ rows falls (h + 1) * 2 steps behind at head h, past
// what the L2 holds at large groups (16/2 at 16K: L2 hit rate 66% against MHA's 96%, the key tiles
// with the longest walks waiting for their loads; NOTES.md v64). In chunks the drift restarts at
// each chunk.
struct BwdCursor {
  static constexpr int kChunk = 0;
  int slice_pos;   // position in the segment's slice list
  int group_head;  // 0 .. group-1
  int mb;          // query block inside the slice
  int mb_begin, mb_end;  // mb_end == 0: slice not loaded yet
  int left;        // query blocks of this (slice, head[, chunk]) still to visit, this one included
  int rot;
  distca_slice_t sl;

  // (r: the rotation, rot or one a caller computes rather than keeps in the cursor)
  __device__ __forceinline__ void start(int b, int e, int r) {
    mb_begin = b;
    mb_end = e;
    left = e - b;
    mb = sl.causal ? b : b + r % left;
  }
  __device__ __forceinline__ void advance() {
    --left;
    mb = mb + 1 == mb_end ? mb_begin : mb + 1;
  }
};
// The chunk of the warp-specialized backward's chunked walk, in query tiles (section 10; 4 and 16
// lost to 8 at 2K, NOTES.md v64).
#ifndef DISTCA_BWD_CHUNK_TILES
#define DISTCA_BWD_CHUNK_TILES 8
#endif
constexpr int kBwdChunkTiles = DISTCA_BWD_CHUNK_TILES;
// The walk in chunks of kChunk query tiles (a BwdCursor wherever a step reads its position).
template <int kChunkTiles>
struct BwdChunkCursor : BwdCursor {
  static constexpr int kChunk = kChunkTiles;
  int chunk_mb;    // the query block at which the current chunk starts
  int chunk_left;  // query blocks of the (slice, head) walk from the chunk's start to its end
  __device__ __forceinline__ void start(int b, int e, int r) {
    BwdCursor::start(b, e, r);
    chunk_mb = mb;
    chunk_left = left;
    left = min(kChunk, left);
  }
};

template <int BM, int BN>
__device__ __forceinline__ bool bwd_slice_range(const distca_slice_t& sl, int kb0, int kb1, int& mb_begin,
                                                int& mb_end) {
  // keys of the tile relative to the slice's key range
  const int j_lo = max(0, kb0 - sl.k_start);
  const int j_hi = min(sl.kv_len, kb1 - sl.k_start);
  if (sl.q_len <= 0 || j_lo >= j_hi) return false;
  long long first_row = 0;
  if (sl.causal) {
    first_row = (long long)j_lo - sl.diagonal;  // first row with j_lo <= row + diagonal
    if (first_row < 0) first_row = 0;
    if (first_row >= sl.q_len) return false;
  }
  mb_begin = (int)(first_row / BM);
  mb_end = (sl.q_len + BM - 1) / BM;
  return true;
}

// The query heads of the GQA group that a work item's walk covers, from its block word
// (distca_attn.h section 9): [first, first + count), the whole group where count is 0. Decoded where
// needed rather than kept in registers (the producer warp has 40).
__device__ __forceinline__ int bwd_group_head_begin(int word) {
  return static_cast<int>((static_cast<uint32_t>(word) >> DISTCA_WORK_HEAD_SHIFT) & DISTCA_WORK_HEAD_MASK);
}
__device__ __forceinline__ int bwd_group_head_end(int word, int group) {
  const int count = static_cast<int>(static_cast<uint32_t>(word) >> DISTCA_WORK_HEADS_SHIFT);
  return count == 0 ? group : bwd_group_head_begin(word) + count;
}

// Advances `c` to the next valid tile at or after its current position. Returns false at the end.
// kSplits: `word` is a block word that may name a group split (section 9), whose query heads bound
// the walk; else the walk covers the whole group (and the word is the bare key block).
template <int BM, int BN, bool kSplits, typename Cursor>
__device__ __forceinline__ bool bwd_seek(Cursor& c, const distca_segment_t& seg, const int* seg_slices,
                                         const distca_slice_t* slices, int group, int word, int kb0, int kb1,
                                         int rot) {
  while (c.slice_pos < seg.slice_count) {
    if (c.left > 0) return true;
    if constexpr (Cursor::kChunk > 0) {
      constexpr int kChunk = Cursor::kChunk;
      // chunk done for this head: the same chunk for the next head, or the next chunk from the
      // first head, or the next slice
      if (c.mb_end > 0 && c.group_head + 1 < (kSplits ? bwd_group_head_end(word, group) : group)) {
        ++c.group_head;
        c.mb = c.chunk_mb;
        c.left = min(kChunk, c.chunk_left);
        continue;
      }
      if (c.mb_end > 0 && c.chunk_left > kChunk) {
        c.chunk_left -= kChunk;
        c.chunk_mb = c.mb;  // (advance() moved it past the chunk's last block)
        c.group_head = kSplits ? bwd_group_head_begin(word) : 0;
        c.left = min(kChunk, c.chunk_left);
        continue;
      }
    } else {
      // current slice exhausted for this head: next head, or next slice
      if (c.mb_end > 0 && c.group_head + 1 < (kSplits ? bwd_group_head_end(word, group) : group)) {
        ++c.group_head;
        c.start(c.mb_begin, c.mb_end, rot);
        continue;
      }
    }
    if (c.mb_end > 0) ++c.slice_pos;
    c.group_head = kSplits ? bwd_group_head_begin(word) : 0;
    c.mb_end = 0;
    while (c.slice_pos < seg.slice_count) {
      c.sl = slices[seg_slices[seg.slice_begin + c.slice_pos]];
      int b, e;
      if (bwd_slice_range<BM, BN>(c.sl, kb0, kb1, b, e)) {
        c.start(b, e, rot);
        break;
      }
      ++c.slice_pos;
    }
  }
  return false;
}

// The key tile of CTA blockIdx.x (WorkCoord: a work item, i.e. a segment and a key block of BN rows
// clipped to the segment, and a key/value head). kSplits: the work list may hold group splits
// (distca_attn.h section 9: only the warp-specialized backward's, launched with dkv_accum); a
// template parameter so that the other kernels' (and the other launches') walks compile as before.
template <int BN, bool kSplits = false, int kChunk = 0, int kHeadGroup = DISTCA_BWD_HEAD_GROUP>
struct BwdTile {
  using Cursor = std::conditional_t<(kChunk > 0), BwdChunkCursor<kChunk>, BwdCursor>;
  int head_kv, group;
  distca_segment_t seg;
  int block;             // the work item's block word: the key block inside the segment (and, kSplits, the split)
  int kb0, k_rows, kb1;  // absolute first key row, rows inside the segment, kb0 + k_rows
  const distca_slice_t* slices;
  const int* seg_slices;
  BwdTile() = default;
  __device__ __forceinline__ explicit BwdTile(const distca_bwd_params_t& p, int cta = (int)blockIdx.x,
                                                 const int32_t* band_end = nullptr) {
    slices = reinterpret_cast<const distca_slice_t*>(p.slices);
    seg_slices = reinterpret_cast<const int*>(p.segment_slices);
    group = p.heads_q / p.heads_kv;
    const WorkCoord<kHeadGroup> wc(p.num_work, p.heads_kv, cta, band_end);
    const int work_index = wc.index;
    head_kv = wc.head;
    const distca_work_t work = reinterpret_cast<const distca_work_t*>(p.work)[work_index];
    seg = reinterpret_cast<const distca_segment_t*>(p.segments)[work.item];
    block = work.block;
    kb0 = seg.k_start + key_block() * BN;
    k_rows = min(BN, seg.k_start + seg.len - kb0);
    kb1 = kb0 + k_rows;
  }
  __device__ __forceinline__ int key_block() const { return kSplits ? block & DISTCA_WORK_BLOCK_MASK : block; }
  // Moves `c` past its query tile to the next one that sees this key tile; false at the end.
  template <int BM>
  __device__ __forceinline__ bool seek_next(Cursor& c) const {
    c.advance();
    return seek<BM>(c);
  }
  // A cursor before the first query tile of BM rows (seek() finds it).
  template <int BM>
  __device__ __forceinline__ Cursor start() const {
    Cursor c;
    c.slice_pos = 0;
    c.group_head = kSplits ? bwd_group_head_begin(block) : 0;
    c.mb = 0;
    c.mb_end = 0;
    c.left = 0;
    c.rot = rot<BM>();
    return c;
  }
  template <int BM>
  __device__ __forceinline__ int rot() const {
    return DISTCA_BWD_ROTATE ? key_block() * (BN > BM ? BN / BM : 1) : 0;
  }
  // Advances `c` to the next query tile (of BM rows) at or after its position that sees this key
  // tile; false at the end.
  template <int BM>
  __device__ __forceinline__ bool seek(Cursor& c) const {
    return bwd_seek<BM, BN, kSplits>(c, seg, seg_slices, slices, group, block, kb0, kb1, c.rot);
  }
  // The same two with the slice lists read from the launch's parameter block `p` rather than from
  // the tile: from a __grid_constant__ block they are constant-bank operands, not registers held
  // across the walk (where a walk runs beside the accumulators of a warp-specialized consumer)
  template <int BM>
  __device__ __forceinline__ bool seek(Cursor& c, const distca_bwd_params_t& p) const {
    return bwd_seek<BM, BN, kSplits>(c, seg, reinterpret_cast<const int*>(p.segment_slices),
                                     reinterpret_cast<const distca_slice_t*>(p.slices), group, block, kb0, kb0 + k_rows,
                                     rot<BM>());
  }
  template <int BM>
  __device__ __forceinline__ bool seek_next(Cursor& c, const distca_bwd_params_t& p) const {
    c.advance();
    return seek<BM>(c, p);
  }
  // The tile's K and V rows (zero past the segment) into sK/sV (asynchronously, not committed).
  template <typename Layout, int D, int THREADS, typename T>
  __device__ __forceinline__ void load_kv(const distca_bwd_params_t& p, T* sK, T* sV, int tid) const {
    const long long kv_stride = (long long)p.heads_kv * D;
    const long long first = ((long long)kb0 * p.heads_kv + head_kv) * D;
    const T* k = reinterpret_cast<const T*>(p.k);
    load_tile<Layout, BN, D, THREADS>(sK, k + first, kv_stride, k_rows, k, tid);
    load_tile<Layout, BN, D, THREADS>(sV, reinterpret_cast<const T*>(p.v) + first, kv_stride, k_rows, k, tid);
  }
};

// Loads the Q/dO tile of cursor position `c` into `stage` of sQ/sdO ([2][BM][D], asynchronously,
// through load(dst, src, row_stride, rows)) and the LSE (log2 domain; +inf for rows past the slice
// or rows that saw no key, so that P = 0) and D of tile row `tid` into registers (stored to shared
// memory by the caller once that stage is free).
template <int BM, int D, typename T, typename Load>
__device__ __forceinline__ void bwd_issue_tile(const distca_bwd_params_t& p, const BwdCursor& c, int head_kv, int group,
                                               T* sQ, T* sdO, int stage, float& lse_reg, float& dsum_reg, int tid,
                                               Load load) {
  constexpr float kLog2e = 1.4426950408889634f;
  const int hq = head_kv * group + c.group_head;
  const int m0 = c.mb * BM;
  const int rows = min(BM, c.sl.q_len - m0);
  const long long row0 = (long long)c.sl.q_start + m0;
  const long long q_stride = (long long)p.heads_q * D;
  load(sQ + stage * BM * D, reinterpret_cast<const T*>(p.q) + (row0 * p.heads_q + hq) * D, q_stride, rows);
  load(sdO + stage * BM * D, reinterpret_cast<const T*>(p.dout) + (row0 * p.heads_q + hq) * D, q_stride, rows);
  if (tid < BM) {
    lse_reg = INFINITY;
    dsum_reg = 0.f;
    if (tid < rows) {
      const long long idx = (long long)hq * p.total_q + row0 + tid;
      const float l = reinterpret_cast<const float*>(p.lse)[idx];
      lse_reg = l == -INFINITY ? INFINITY : l * kLog2e;
      dsum_reg = reinterpret_cast<const float*>(p.dsum)[idx];
    }
  }
}

// Positions `cur` at the first query tile that sees the key tile [kb0, kb1) and, if there is one,
// issues its loads into stage 0 (LSE/D into sLse/sDsum[0, BM)). Commits a cp.async group either way.
template <int BM, int BN, int D, typename T, typename Load>
__device__ __forceinline__ bool bwd_begin(const distca_bwd_params_t& p, BwdCursor& cur, const BwdTile<BN>& tile, T* sQ,
                                          T* sdO, float* sLse, float* sDsum, int tid, Load load) {
  cur = tile.template start<BM>();
  const bool have = tile.template seek<BM>(cur);
  if (have) {
    float lse_reg = INFINITY, dsum_reg = 0.f;
    bwd_issue_tile<BM, D, T>(p, cur, tile.head_kv, tile.group, sQ, sdO, 0, lse_reg, dsum_reg, tid, load);
    if (tid < BM) {
      sLse[tid] = lse_reg;
      sDsum[tid] = dsum_reg;
    }
  }
  cp_async_commit();
  return have;
}

template <typename T, int D, int BM, int BN, int WARPS>
__device__ __forceinline__ void bwd_kernel(const distca_bwd_params_t& p) {
  using Cfg = BwdConfig<D, BM, BN, WARPS>;
  constexpr int THREADS = Cfg::kThreads;
  constexpr int A_MT = Cfg::A_MT, A_NT = Cfg::A_NT;
  constexpr int B_MT = Cfg::B_MT, B_NT = Cfg::B_NT;
  constexpr int C_MT = Cfg::C_MT, C_NT = Cfg::C_NT;
  constexpr float kLog2e = 1.4426950408889634f;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + Cfg::kSmemKV;
  T* sQ = sV + Cfg::kSmemKV;       // [2][BM][D]
  T* sdO = sQ + 2 * Cfg::kSmemQ;   // [2][BM][D]
  T* sP = sdO + 2 * Cfg::kSmemQ;   // [BN][BM]: P^T
  T* sdS = sP + Cfg::kSmemP;       // [BN][BM]: dS^T
  float* sLse = reinterpret_cast<float*>(sdS + Cfg::kSmemP);  // [2][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + 2 * BM;                               // [2][BM]

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int heads_kv = p.heads_kv;
  const int heads_q = p.heads_q;
  const BwdTile<BN> tile(p);
  const int group = tile.group, head_kv = tile.head_kv;
  const int kb0 = tile.kb0, k_rows = tile.k_rows;

  const long long q_stride = (long long)heads_q * D;
  const long long kv_stride = (long long)heads_kv * D;
  const T* fallback = reinterpret_cast<const T*>(p.k);
  float* gdQacc = reinterpret_cast<float*>(p.dq_accum);
  tile.template load_kv<SwzLayout, D, THREADS>(p, sK, sV, tid);

  float acc_dk[B_MT][B_NT][4], acc_dv[B_MT][B_NT][4];
  zero(acc_dk);
  zero(acc_dv);

  auto load_qdo = [&](T* dst, const T* src, long long row_stride, int rows) {
    load_tile_async<BM, D, THREADS>(dst, src, row_stride, rows, fallback, tid);
  };
  BwdCursor cur;
  bool have = bwd_begin<BM, BN, D, T>(p, cur, tile, sQ, sdO, sLse, sDsum, tid, load_qdo);

  const float scale_log2 = p.scale * kLog2e;
  const unsigned uwarp = threadIdx.x / 32;  // unsigned: the divisions below are shifts and masks
  const int a_key0 = (uwarp % Cfg::A_WK) * (BN / Cfg::A_WK);  // phase A: keys
  const int a_q0 = (uwarp / Cfg::A_WK) * (BM / Cfg::A_WQ);    // phase A: queries
  const int b_key0 = (uwarp % Cfg::B_WK) * (BN / Cfg::B_WK);  // phase B: keys
  const int b_d0 = (uwarp / Cfg::B_WK) * (D / Cfg::B_WD);
  const int c_q0 = (uwarp % Cfg::C_WQ) * (BM / Cfg::C_WQ);    // phase C: queries
  const int c_d0 = (uwarp / Cfg::C_WQ) * (D / Cfg::C_WD);
  int stage = 0;
  while (have) {
    // Tile `cur` is in `stage`. Once everyone is past the barrier, the other stage is free
    // (its last readers finished the previous iteration), so the next tile loads behind
    // this one's math.
    cp_async_wait<0>();
    __syncthreads();
    BwdCursor next = cur;
    const bool have_next = tile.template seek_next<BM>(next);
    float next_lse = INFINITY, next_dsum = 0.f;
    if (have_next) bwd_issue_tile<BM, D, T>(p, next, head_kv, group, sQ, sdO, stage ^ 1, next_lse, next_dsum, tid, load_qdo);
    cp_async_commit();

    const T* cQ = sQ + stage * Cfg::kSmemQ;
    const T* cdO = sdO + stage * Cfg::kSmemQ;
    const float* cLse = sLse + stage * BM;
    const float* cDsum = sDsum + stage * BM;
    const distca_slice_t& sl = cur.sl;
    const int m0 = cur.mb * BM;
    const int hq = head_kv * group + cur.group_head;

    // ---- phase A: S^T = K Q^T, dP^T = V dO^T; P^T and dS^T to shared memory
    {
      float st[A_MT][A_NT][4], dpt[A_MT][A_NT][4];
      zero(st);
      zero(dpt);
#ifdef DISTCA_BWD_SEPARATE_A
      mma_rows_by_rows<T, A_MT, A_NT, D, D, D>(st, sK, a_key0, cQ, a_q0, lane);
      mma_rows_by_rows<T, A_MT, A_NT, D, D, D>(dpt, sV, a_key0, cdO, a_q0, lane);
#else
      mma_rows_by_rows_x2<T, A_MT, A_NT, D, D>(st, sK, cQ, dpt, sV, cdO, a_key0, a_q0, lane);
#endif
      const bool full_tile = keys_all_visible(sl, kb0 - sl.k_start, BN, (long long)m0 + sl.diagonal);
#pragma unroll
      for (int mt = 0; mt < A_MT; ++mt) {
        const int key_a = kb0 + a_key0 + mt * 16 + (lane >> 2) - sl.k_start;  // key inside the slice
#pragma unroll
        for (int j = 0; j < A_NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int q = a_q0 + j * 8 + (lane & 3) * 2 + (e & 1);
            float pv = fast_exp2(fmaf(st[mt][j][e], scale_log2, -cLse[q]));
            if (!full_tile) {
              // key_visible(), spelled out: passing the row's limit as an argument computes it
              // before the short-circuit and cost 2-4% of the backward (A/B on an H200).
              const int key = key_a + ((e & 2) ? 8 : 0);
              const bool visible = key >= 0 && key < sl.kv_len &&
                                   (!sl.causal || (long long)key <= (long long)m0 + q + sl.diagonal);
              if (!visible) pv = 0.f;
            }
            st[mt][j][e] = pv;
            dpt[mt][j][e] = pv * (dpt[mt][j][e] - cDsum[q]);
          }
        }
      }
      store_frags<T, A_MT, A_NT, BM>(sP, st, a_key0, a_q0, lane);
      store_frags<T, A_MT, A_NT, BM>(sdS, dpt, a_key0, a_q0, lane);
    }
    __syncthreads();  // P^T, dS^T complete

    // The next tile's LSE/D go to the other stage (its readers are past the first barrier).
    if (have_next && tid < BM) {
      sLse[(stage ^ 1) * BM + tid] = next_lse;
      sDsum[(stage ^ 1) * BM + tid] = next_dsum;
    }

    // ---- phase B: dV += P^T dO, dK += dS^T Q (this warp's keys x D/B_WD columns)
    mma_rows_by_cols<T, B_MT, B_NT, BM, BM, false, D>(acc_dv, sP, b_key0, cdO, b_d0, lane);
    mma_rows_by_cols<T, B_MT, B_NT, BM, BM, false, D>(acc_dk, sdS, b_key0, cQ, b_d0, lane);

    // ---- phase C: dQ(tile) += dS K, fp32 atomics into the workspace (scaled in bwd_post)
#pragma unroll
    for (int pass = 0; pass < Cfg::C_PASSES; ++pass) {
      constexpr int PASS_COLS = C_NT * 8;
      float acc_dq[C_MT][C_NT][4];
      zero(acc_dq);
      mma_rows_by_cols<T, C_MT, C_NT, BN, BM, true, D>(acc_dq, sdS, c_q0, sK, c_d0 + pass * PASS_COLS, lane);
      const int c_rows = min(BM, sl.q_len - m0);
      float* c_base = gdQacc + (((long long)sl.q_start + m0) * heads_q + hq) * D + c_d0 + (lane & 3) * 2;
#pragma unroll
      for (int mt = 0; mt < C_MT; ++mt) {
        const int qa = c_q0 + mt * 16 + (lane >> 2);
#pragma unroll
        for (int j = 0; j < C_NT; ++j) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int q = qa + h * 8;
            if (q < c_rows) {
              float* dst = c_base + q * q_stride + pass * PASS_COLS + j * 8;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
              atomicAdd(reinterpret_cast<float2*>(dst), make_float2(acc_dq[mt][j][2 * h], acc_dq[mt][j][2 * h + 1]));
#else
              atomicAdd(dst, acc_dq[mt][j][2 * h]);
              atomicAdd(dst + 1, acc_dq[mt][j][2 * h + 1]);
#endif
            }
          }
        }
      }
    }

    cur = next;
    have = have_next;
    stage ^= 1;
  }
  cp_async_wait<0>();  // K/V loads of a tile no slice reads are still in flight otherwise

  // Write dK (times the softmax scale) and dV rows of the tile; rows no slice read get 0.
  T* gdK = reinterpret_cast<T*>(p.dk) + ((long long)kb0 * heads_kv + head_kv) * D + b_d0;
  T* gdV = reinterpret_cast<T*>(p.dv) + ((long long)kb0 * heads_kv + head_kv) * D + b_d0;
#pragma unroll
  for (int mt = 0; mt < B_MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = b_key0 + mt * 16 + h * 8 + (lane >> 2);
      if (r < k_rows) {
#pragma unroll
        for (int j = 0; j < B_NT; ++j) {
          const int c = j * 8 + (lane & 3) * 2;
          *reinterpret_cast<uint32_t*>(gdK + r * kv_stride + c) =
              Elem<T>::pack(acc_dk[mt][j][2 * h] * p.scale, acc_dk[mt][j][2 * h + 1] * p.scale);
          *reinterpret_cast<uint32_t*>(gdV + r * kv_stride + c) =
              Elem<T>::pack(acc_dv[mt][j][2 * h], acc_dv[mt][j][2 * h + 1]);
        }
      }
    }
  }
}

// bwd_pre's and bwd_post's vector `vec` (8 elements of one row and head of a [total_q, heads_q, D]
// tensor): its index in the [heads_q, total_q] arrays (dsum, dq_claims).
template <int D>
__device__ __forceinline__ long long elementwise_row_head(const distca_bwd_params_t& p, long long vec) {
  const long long row_head = vec / (D / 8);
  const long long row = row_head / p.heads_q;
  const long long head = row_head - row * p.heads_q;
  return head * p.total_q + row;
}

// D = rowsum(dO * O) in fp32, [heads_q, total_q]; zeroes the dQ workspace, or, with dq_claims
// (distca_attn.h section 8), leaves that to the warp-specialized step 2 and zeroes the claim words.
template <typename T, int D>
__device__ __forceinline__ void bwd_pre_kernel(const distca_bwd_params_t& p) {
  constexpr int LANES = D / 8;  // threads per (row, head) vector
  const long long vec = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long total_vec = (long long)p.total_q * p.heads_q * LANES;
  const bool active = vec < total_vec;
  float dot = 0.f;
  if (active) {
    const uint4 o = reinterpret_cast<const uint4*>(p.o)[vec];
    const uint4 g = reinterpret_cast<const uint4*>(p.dout)[vec];
    const uint32_t ow[4] = {o.x, o.y, o.z, o.w};
    const uint32_t gw[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 a = Elem<T>::unpack(ow[i]);
      const float2 b = Elem<T>::unpack(gw[i]);
      dot = fmaf(a.x, b.x, dot);
      dot = fmaf(a.y, b.y, dot);
    }
    if (p.dq_claims == 0) {
      float4* acc = reinterpret_cast<float4*>(p.dq_accum) + vec * 2;
      acc[0] = make_float4(0.f, 0.f, 0.f, 0.f);
      acc[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
#pragma unroll
  for (int off = LANES / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
  if (active && (threadIdx.x % LANES) == 0) {
    const long long at = elementwise_row_head<D>(p, vec);
    reinterpret_cast<float*>(p.dsum)[at] = dot;
    if (p.dq_claims != 0) reinterpret_cast<uint32_t*>(p.dq_claims)[at] = 0u;
  }
}

// The warp-specialized backward's dQ workspace (distca_attn.h section 12, ABI version 6): at head
// dims 128 and 256 each group of 8 columns holds columns 0, 2, 4, 6, 1, 3, 5, 7, the order in which
// the consumers' stmatrix stores stage a warp's accumulator fragments (bwd_ws_sm90.cuh,
// stage_dq_fragments: each 8x8 matrix one shared-memory wavefront, where the plain 8-byte stores met
// two rows in every bank; H100: head_dim 128 +1-1.8%, 256 +4-11%, NOTES v78). At 64 the kernel stores
// dQ^T's fragments one element at a time, conflict-free in order. 0: every kernel in order.
#ifndef DISTCA_BWD_DQ_STMATRIX
#define DISTCA_BWD_DQ_STMATRIX 1
#endif
template <int D>
constexpr bool kDqWsPermuted = DISTCA_BWD_DQ_STMATRIX != 0 && D >= 128;

// Where column c of a dQ row sits in the warp-specialized backward's workspace.
template <int D>
__device__ __forceinline__ int dq_ws_column(int c) {
  if constexpr (kDqWsPermuted<D>) return (c & ~7) | ((c & 1) << 2) | ((c >> 1) & 3);
  return c;
}

// dQ = scale * workspace, converted to the element type; with dq_claims (section 8), 0 for the
// rows whose workspace no key tile zeroed (their query tile sees no key). kWsLayout: the workspace
// as the warp-specialized backward leaves it (bwd_post_ws, kDqWsPermuted).
template <typename T, int D, bool kWsLayout = false>
__device__ __forceinline__ void bwd_post_kernel(const distca_bwd_params_t& p) {
  const long long vec = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long total_vec = (long long)p.total_q * p.heads_q * (D / 8);
  if (vec >= total_vec) return;
  if (p.dq_claims != 0) {
    if ((reinterpret_cast<const uint32_t*>(p.dq_claims)[elementwise_row_head<D>(p, vec)] & kDqZeroed) == 0) {
      reinterpret_cast<uint4*>(p.dq)[vec] = make_uint4(0u, 0u, 0u, 0u);
      return;
    }
  }
  const float4* acc = reinterpret_cast<const float4*>(p.dq_accum) + vec * 2;
  const float4 a = acc[0], b = acc[1];
  const float s = p.scale;
  uint4 out;
  if constexpr (kWsLayout && kDqWsPermuted<D>) {  // a: columns 0, 2, 4, 6; b: 1, 3, 5, 7
    out.x = Elem<T>::pack(a.x * s, b.x * s);
    out.y = Elem<T>::pack(a.y * s, b.y * s);
    out.z = Elem<T>::pack(a.z * s, b.z * s);
    out.w = Elem<T>::pack(a.w * s, b.w * s);
  } else {
    out.x = Elem<T>::pack(a.x * s, a.y * s);
    out.y = Elem<T>::pack(a.z * s, a.w * s);
    out.z = Elem<T>::pack(b.x * s, b.y * s);
    out.w = Elem<T>::pack(b.z * s, b.w * s);
  }
  reinterpret_cast<uint4*>(p.dq)[vec] = out;
}

}  // namespace distca
