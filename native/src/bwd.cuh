// Backward: FlashAttention-2 style, parallel over key tiles. One CTA per (key tile of a segment,
// key/value head). Each warp owns 16 keys and keeps their dK, dV rows in fp32 registers while the
// CTA walks every (slice of the segment, query head of the GQA group, query tile that sees the key
// tile); dQ of each query tile goes to the fp32 workspace with atomics. Shared K/V segments (KV
// dedup) and GQA therefore sum in registers and dK/dV are written once, without atomics.
#pragma once

#include "common.cuh"

namespace distca {

template <int D, int BM, int BN>
struct BwdConfig {
  static constexpr int kWarps = BN / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSmemKV = BN * D;  // elements
  static constexpr int kSmemQ = BM * D;
  static constexpr int kSmemDS = BN * BM;
  // K, V, 2 stages of Q, 2 stages of dO, dS^T (16-bit), then 2 stages of LSE and D (fp32)
  static constexpr int kSmemBytes = (2 * kSmemKV + 4 * kSmemQ + kSmemDS) * 2 + 4 * BM * 4;
};

// Iterates over the query tiles that see a key tile: (slice of the segment, query head of the
// group, query block), skipping slices and blocks that cannot see any key of the tile.
struct BwdCursor {
  int slice_pos;  // position in the segment's slice list
  int group_head; // 0 .. group-1
  int mb;         // query block inside the slice
  int mb_end;
  distca_slice_t sl;
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

// Advances `c` to the next valid tile at or after its current position. Returns false at the end.
template <int BM, int BN>
__device__ __forceinline__ bool bwd_seek(BwdCursor& c, const distca_segment_t& seg, const int* seg_slices,
                                         const distca_slice_t* slices, int group, int kb0, int kb1) {
  while (c.slice_pos < seg.slice_count) {
    if (c.mb < c.mb_end) return true;
    // current slice exhausted for this head: next head, or next slice
    if (c.mb_end > 0 && c.group_head + 1 < group) {
      ++c.group_head;
      int b, e;
      bwd_slice_range<BM, BN>(c.sl, kb0, kb1, b, e);
      c.mb = b;
      continue;
    }
    if (c.mb_end > 0) ++c.slice_pos;  // mb_end == 0 marks "slice not loaded yet"
    c.group_head = 0;
    c.mb = 0;
    c.mb_end = 0;
    while (c.slice_pos < seg.slice_count) {
      c.sl = slices[seg_slices[seg.slice_begin + c.slice_pos]];
      int b, e;
      if (bwd_slice_range<BM, BN>(c.sl, kb0, kb1, b, e)) {
        c.mb = b;
        c.mb_end = e;
        break;
      }
      ++c.slice_pos;
    }
  }
  return false;
}

template <typename T, int D, int BM, int BN>
__device__ __forceinline__ void bwd_kernel(const distca_bwd_params_t& p) {
  using Cfg = BwdConfig<D, BM, BN>;
  constexpr int THREADS = Cfg::kThreads;
  constexpr int WARPS = Cfg::kWarps;
  constexpr int KS = D / 16;       // k-steps over head_dim
  constexpr int QT = BM / 8;       // n-tiles over query rows (S^T, dP^T)
  constexpr int DT = D / 8;        // n-tiles over head_dim (dK, dV)
  constexpr int WM = BM / 16;      // dQ: warps along query rows
  constexpr int WN = WARPS / WM;   // dQ: warps along head_dim
  constexpr int DQ_COLS = D / WN;  // dQ columns per warp
  static_assert(WARPS % WM == 0 && D % (WN * 16) == 0, "dQ warp layout");
  constexpr float kLog2e = 1.4426950408889634f;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + Cfg::kSmemKV;
  T* sQ = sV + Cfg::kSmemKV;       // [2][BM][D]
  T* sdO = sQ + 2 * Cfg::kSmemQ;   // [2][BM][D]
  T* sdS = sdO + 2 * Cfg::kSmemQ;  // [BN][BM]: dS^T
  float* sLse = reinterpret_cast<float*>(sdS + Cfg::kSmemDS);  // [2][BM], log2 domain, +inf = no keys
  float* sDsum = sLse + 2 * BM;                                // [2][BM]

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int heads_kv = p.heads_kv;
  const int heads_q = p.heads_q;
  const int group = heads_q / heads_kv;
  const int work_index = blockIdx.x / heads_kv;
  const int head_kv = blockIdx.x - work_index * heads_kv;

  const distca_work_t work = reinterpret_cast<const distca_work_t*>(p.work)[work_index];
  const distca_segment_t seg = reinterpret_cast<const distca_segment_t*>(p.segments)[work.item];
  const distca_slice_t* slices = reinterpret_cast<const distca_slice_t*>(p.slices);
  const int* seg_slices = reinterpret_cast<const int*>(p.segment_slices);

  const int kb0 = seg.k_start + work.block * BN;               // absolute first key row
  const int k_rows = min(BN, seg.k_start + seg.len - kb0);     // rows inside the segment
  const int kb1 = kb0 + k_rows;
  const long long q_stride = (long long)heads_q * D;
  const long long kv_stride = (long long)heads_kv * D;
  const T* fallback = reinterpret_cast<const T*>(p.k);
  const T* gQall = reinterpret_cast<const T*>(p.q);
  const T* gdOall = reinterpret_cast<const T*>(p.dout);
  const float* gLse = reinterpret_cast<const float*>(p.lse);
  const float* gDsum = reinterpret_cast<const float*>(p.dsum);
  float* gdQacc = reinterpret_cast<float*>(p.dq_accum);

  load_tile_async<BN, D, THREADS>(sK, reinterpret_cast<const T*>(p.k) + ((long long)kb0 * heads_kv + head_kv) * D,
                                  kv_stride, k_rows, fallback, tid);
  load_tile_async<BN, D, THREADS>(sV, reinterpret_cast<const T*>(p.v) + ((long long)kb0 * heads_kv + head_kv) * D,
                                  kv_stride, k_rows, fallback, tid);

  float acc_dk[DT][4], acc_dv[DT][4];
#pragma unroll
  for (int j = 0; j < DT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_dk[j][e] = acc_dv[j][e] = 0.f;
  }

  // Loads the Q/dO tile of cursor position `c` into `stage` (async) and its LSE/D rows into
  // registers (stored to shared memory later, when the stage is free).
  auto issue_tile = [&](const BwdCursor& c, int stage, float& lse_reg, float& dsum_reg) {
    const int hq = head_kv * group + c.group_head;
    const int m0 = c.mb * BM;
    const int rows = min(BM, c.sl.q_len - m0);
    const long long row0 = (long long)c.sl.q_start + m0;
    load_tile_async<BM, D, THREADS>(sQ + stage * Cfg::kSmemQ, gQall + (row0 * heads_q + hq) * D, q_stride, rows,
                                    fallback, tid);
    load_tile_async<BM, D, THREADS>(sdO + stage * Cfg::kSmemQ, gdOall + (row0 * heads_q + hq) * D, q_stride, rows,
                                    fallback, tid);
    if (tid < BM) {
      lse_reg = INFINITY;  // rows past the slice: P = exp2(s - inf) = 0
      dsum_reg = 0.f;
      if (tid < rows) {
        const long long idx = (long long)hq * p.total_q + row0 + tid;
        const float l = gLse[idx];
        lse_reg = l == -INFINITY ? INFINITY : l * kLog2e;  // row saw no key: P = 0
        dsum_reg = gDsum[idx];
      }
    }
  };

  BwdCursor cur;
  cur.slice_pos = 0;
  cur.group_head = 0;
  cur.mb = 0;
  cur.mb_end = 0;
  bool have = bwd_seek<BM, BN>(cur, seg, seg_slices, slices, group, kb0, kb1);
  float lse_reg = INFINITY, dsum_reg = 0.f;
  if (have) {
    issue_tile(cur, 0, lse_reg, dsum_reg);
    if (tid < BM) {
      sLse[tid] = lse_reg;
      sDsum[tid] = dsum_reg;
    }
  }
  cp_async_commit();

  const float scale_log2 = p.scale * kLog2e;
  int stage = 0;
  while (have) {
    BwdCursor next = cur;
    ++next.mb;
    const bool have_next = bwd_seek<BM, BN>(next, seg, seg_slices, slices, group, kb0, kb1);
    float next_lse = INFINITY, next_dsum = 0.f;
    if (have_next) issue_tile(next, stage ^ 1, next_lse, next_dsum);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const T* cQ = sQ + stage * Cfg::kSmemQ;
    const T* cdO = sdO + stage * Cfg::kSmemQ;
    const float* cLse = sLse + stage * BM;
    const float* cDsum = sDsum + stage * BM;
    const distca_slice_t& sl = cur.sl;
    const int m0 = cur.mb * BM;
    const int hq = head_kv * group + cur.group_head;

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x BM queries.
    float st[QT][4], dpt[QT][4];
#pragma unroll
    for (int j = 0; j < QT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] = dpt[j][e] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t ak[4], av[4];
      {
        const int r = warp * 16 + (lane & 15);
        const int c = ks * 16 + (lane >> 4) * 8;
        ldsm_x4(ak, smem_addr(sK + swz<D>(r, c)));
        ldsm_x4(av, smem_addr(sV + swz<D>(r, c)));
      }
#pragma unroll
      for (int np = 0; np < QT / 2; ++np) {
        uint32_t bq[4], bo[4];
        const int r = np * 16 + (lane >> 4) * 8 + (lane & 7);
        const int c = ks * 16 + ((lane >> 3) & 1) * 8;
        ldsm_x4(bq, smem_addr(cQ + swz<D>(r, c)));
        ldsm_x4(bo, smem_addr(cdO + swz<D>(r, c)));
        Elem<T>::mma(st[2 * np], ak, bq[0], bq[1]);
        Elem<T>::mma(st[2 * np + 1], ak, bq[2], bq[3]);
        Elem<T>::mma(dpt[2 * np], av, bo[0], bo[1]);
        Elem<T>::mma(dpt[2 * np + 1], av, bo[2], bo[3]);
      }
    }

    // P^T = exp2(S^T * scale_log2 - lse_log2[q]) with the slice's mask.
    const int key_a = kb0 + warp * 16 + (lane >> 2) - sl.k_start;  // key index inside the slice
    const bool full_tile = kb0 >= sl.k_start && kb0 + BN <= sl.k_start + sl.kv_len &&
                           (!sl.causal || (long long)(kb0 + BN - 1 - sl.k_start) <= (long long)m0 + sl.diagonal);
#pragma unroll
    for (int j = 0; j < QT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int q = j * 8 + (lane & 3) * 2 + (e & 1);
        float pv = fast_exp2(fmaf(st[j][e], scale_log2, -cLse[q]));
        if (!full_tile) {
          const int key = key_a + ((e & 2) ? 8 : 0);
          const bool visible = key >= 0 && key < sl.kv_len && (!sl.causal || (long long)key <= (long long)m0 + q + sl.diagonal);
          if (!visible) pv = 0.f;
        }
        st[j][e] = pv;
      }
    }

    // dV += P^T dO
    mma_acc_frag_by_tile<T, BM, D>(acc_dv, st, cdO, lane);

    // dS^T = P^T * (dP^T - D[q]); store it (16-bit) for dQ, then dK += dS^T Q.
#pragma unroll
    for (int j = 0; j < QT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int q = j * 8 + (lane & 3) * 2 + (e & 1);
        st[j][e] = st[j][e] * (dpt[j][e] - cDsum[q]);
      }
    }
    {
      const int r = warp * 16 + (lane >> 2);
#pragma unroll
      for (int j = 0; j < QT; ++j) {
        const int c = j * 8 + (lane & 3) * 2;
        *reinterpret_cast<uint32_t*>(sdS + swz<BM>(r, c)) = Elem<T>::pack(st[j][0], st[j][1]);
        *reinterpret_cast<uint32_t*>(sdS + swz<BM>(r + 8, c)) = Elem<T>::pack(st[j][2], st[j][3]);
      }
    }
    mma_acc_frag_by_tile<T, BM, D>(acc_dk, st, cQ, lane);
    __syncthreads();  // dS^T complete; this stage's Q/dO/LSE/D no longer read after this point

    // The next tile's LSE/D go to the other stage (last read two iterations ago).
    if (have_next && tid < BM) {
      sLse[(stage ^ 1) * BM + tid] = next_lse;
      sDsum[(stage ^ 1) * BM + tid] = next_dsum;
    }

    // dQ(tile) += dS K: warps tile (query rows) x (head_dim columns); fp32 atomics.
    {
      const int wm = warp % WM;
      const int wn = warp / WM;
      float acc_dq[DQ_COLS / 8][4];
#pragma unroll
      for (int j = 0; j < DQ_COLS / 8; ++j) acc_dq[j][0] = acc_dq[j][1] = acc_dq[j][2] = acc_dq[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        uint32_t a[4];
        {
          // A = dS (queries x keys) read from dS^T storage [key][query] with a transpose
          const int r = kk * 16 + (lane >> 4) * 8 + (lane & 7);
          const int c = wm * 16 + ((lane >> 3) & 1) * 8;
          ldsm_x4_trans(a, smem_addr(sdS + swz<BM>(r, c)));
        }
#pragma unroll
        for (int dp = 0; dp < DQ_COLS / 16; ++dp) {
          uint32_t b[4];
          const int r = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
          const int c = wn * DQ_COLS + dp * 16 + (lane >> 4) * 8;
          ldsm_x4_trans(b, smem_addr(sK + swz<D>(r, c)));
          Elem<T>::mma(acc_dq[2 * dp], a, b[0], b[1]);
          Elem<T>::mma(acc_dq[2 * dp + 1], a, b[2], b[3]);
        }
      }
      const int rows = min(BM, sl.q_len - m0);
      const int qa = wm * 16 + (lane >> 2);
      float* base = gdQacc + (((long long)sl.q_start + m0) * heads_q + hq) * D + wn * DQ_COLS + (lane & 3) * 2;
#pragma unroll
      for (int j = 0; j < DQ_COLS / 8; ++j) {
        if (qa < rows) {
          atomicAdd(base + qa * q_stride + j * 8, acc_dq[j][0]);
          atomicAdd(base + qa * q_stride + j * 8 + 1, acc_dq[j][1]);
        }
        if (qa + 8 < rows) {
          atomicAdd(base + (qa + 8) * q_stride + j * 8, acc_dq[j][2]);
          atomicAdd(base + (qa + 8) * q_stride + j * 8 + 1, acc_dq[j][3]);
        }
      }
    }

    cur = next;
    have = have_next;
    stage ^= 1;
  }
  cp_async_wait<0>();  // K/V loads of a tile no slice reads are still in flight otherwise

  // Write dK (times the softmax scale) and dV rows of the tile; rows no slice read get 0.
  T* gdK = reinterpret_cast<T*>(p.dk) + ((long long)kb0 * heads_kv + head_kv) * D;
  T* gdV = reinterpret_cast<T*>(p.dv) + ((long long)kb0 * heads_kv + head_kv) * D;
  const int ra = warp * 16 + (lane >> 2);
#pragma unroll
  for (int j = 0; j < DT; ++j) {
    const int c = j * 8 + (lane & 3) * 2;
    if (ra < k_rows) {
      *reinterpret_cast<uint32_t*>(gdK + ra * kv_stride + c) =
          Elem<T>::pack(acc_dk[j][0] * p.scale, acc_dk[j][1] * p.scale);
      *reinterpret_cast<uint32_t*>(gdV + ra * kv_stride + c) = Elem<T>::pack(acc_dv[j][0], acc_dv[j][1]);
    }
    if (ra + 8 < k_rows) {
      *reinterpret_cast<uint32_t*>(gdK + (ra + 8) * kv_stride + c) =
          Elem<T>::pack(acc_dk[j][2] * p.scale, acc_dk[j][3] * p.scale);
      *reinterpret_cast<uint32_t*>(gdV + (ra + 8) * kv_stride + c) = Elem<T>::pack(acc_dv[j][2], acc_dv[j][3]);
    }
  }
}

// D = rowsum(dO * O) in fp32, [heads_q, total_q]; zeroes the dQ workspace.
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
    float4* acc = reinterpret_cast<float4*>(p.dq_accum) + vec * 2;
    acc[0] = make_float4(0.f, 0.f, 0.f, 0.f);
    acc[1] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int off = LANES / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
  if (active && (threadIdx.x % LANES) == 0) {
    const long long row_head = vec / LANES;
    const long long row = row_head / p.heads_q;
    const long long head = row_head - row * p.heads_q;
    reinterpret_cast<float*>(p.dsum)[head * p.total_q + row] = dot;
  }
}

// dQ = scale * workspace, converted to the element type.
template <typename T, int D>
__device__ __forceinline__ void bwd_post_kernel(const distca_bwd_params_t& p) {
  const long long vec = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long total_vec = (long long)p.total_q * p.heads_q * (D / 8);
  if (vec >= total_vec) return;
  const float4* acc = reinterpret_cast<const float4*>(p.dq_accum) + vec * 2;
  const float4 a = acc[0], b = acc[1];
  const float s = p.scale;
  uint4 out;
  out.x = Elem<T>::pack(a.x * s, a.y * s);
  out.y = Elem<T>::pack(a.z * s, a.w * s);
  out.z = Elem<T>::pack(b.x * s, b.y * s);
  out.w = Elem<T>::pack(b.z * s, b.w * s);
  reinterpret_cast<uint4*>(p.dq)[vec] = out;
}

}  // namespace distca
