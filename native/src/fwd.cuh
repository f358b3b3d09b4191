// Forward: FlashAttention-2 over a fused varlen batch. One CTA per (query tile, query head); each
// warp owns 16*MT query rows and their O accumulators in registers, reads its Q fragments from
// shared memory, and streams K/V tiles through a two-stage cp.async pipeline. Online softmax in
// the exp2 domain, fp32.
#pragma once

#include "common.cuh"

namespace distca {

template <int D, int BM, int BN, int WARPS>
struct FwdConfig {
  static constexpr int kBlockM = BM, kBlockN = BN;  // for the host (distca_attn_info_t)
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kMT = BM / (16 * WARPS);  // m16 tiles per warp
  static_assert(kMT * 16 * WARPS == BM, "BM must be a multiple of 16 * WARPS");
  static constexpr int kSmemQ = BM * D;  // elements
  static constexpr int kSmemKV = BN * D;
  // Q, then 2 stages of K, then 2 stages of V
  static constexpr int kSmemBytes = (kSmemQ + 4 * kSmemKV) * 2;
};

// Keys [0, n_end) of the slice are visible to at least one of the tile's rows [m0, m0 + rows).
__device__ __forceinline__ int fwd_key_end(const distca_slice_t& sl, int m0, int rows) {
  long long n_end = sl.kv_len;
  if (sl.causal) {
    n_end = (long long)m0 + rows + sl.diagonal;  // last row's limit + 1
    n_end = n_end < 0 ? 0 : (n_end > sl.kv_len ? sl.kv_len : n_end);
  }
  return (int)n_end;
}

// fwd_key_end; when no key is visible (n_end == 0), also writes the tile's O = 0 and LSE = -inf.
template <int D, int THREADS, typename T>
__device__ __forceinline__ int fwd_visible_keys(const distca_slice_t& sl, int m0, int rows, T* gO, long long q_stride,
                                                float* gLse, int tid) {
  const int n_end = fwd_key_end(sl, m0, rows);
  if (n_end == 0) {
    for (int c = tid; c < rows * (D / 8); c += THREADS) {
      const int r = c / (D / 8), ch = c % (D / 8);
      *reinterpret_cast<uint4*>(gO + r * q_stride + ch * 8) = make_uint4(0, 0, 0, 0);
    }
    for (int r = tid; r < rows; r += THREADS) gLse[r] = -INFINITY;
  }
  return n_end;
}

// What identifies a forward tile: its slice, query block and head, read from the work list and the
// slice descriptors (two dependent global loads). A persistent producer reads them once and hands
// them to its consumers through shared memory.
struct FwdTileRef {
  distca_slice_t sl;
  int block, head;
};

// The tile of linear number `cta` (WorkCoord: a work item, i.e. a slice and a block of query rows,
// and a query head).
__device__ __forceinline__ FwdTileRef fwd_tile_ref(const distca_fwd_params_t& p, int cta, const int32_t* band_end = nullptr) {
  const WorkCoord<DISTCA_FWD_HEAD_GROUP> wc(p.num_work, p.heads_q, cta, band_end);
  const distca_work_t work = reinterpret_cast<const distca_work_t*>(p.work)[wc.index];
  FwdTileRef ref;
  ref.sl = reinterpret_cast<const distca_slice_t*>(p.slices)[work.item];
  ref.block = work.block;
  ref.head = wc.head;
  return ref;
}

// A query tile (BM rows clipped to the slice, one query head) and its global pointers.
template <typename T, int D, int BM>
struct FwdTile {
  distca_slice_t sl;
  int m0, rows, head, head_kv;
  long long q_stride, kv_stride;
  const T* gQ;
  const T* gK;
  const T* gV;
  T* gO;
  float* gLse;
  // the tile of CTA blockIdx.x (or of linear number `cta`)
  __device__ __forceinline__ explicit FwdTile(const distca_fwd_params_t& p, int cta = (int)blockIdx.x)
      : FwdTile(p, fwd_tile_ref(p, cta)) {}
  __device__ __forceinline__ FwdTile(const distca_fwd_params_t& p, const FwdTileRef& ref) {
    head = ref.head;
    head_kv = head / (p.heads_q / p.heads_kv);
    sl = ref.sl;
    m0 = ref.block * BM;
    rows = min(BM, sl.q_len - m0);
    q_stride = (long long)p.heads_q * D;
    kv_stride = (long long)p.heads_kv * D;
    const long long q_row = (long long)(sl.q_start + m0) * p.heads_q + head;
    gQ = reinterpret_cast<const T*>(p.q) + q_row * D;
    gO = reinterpret_cast<T*>(p.o) + q_row * D;
    gLse = reinterpret_cast<float*>(p.lse) + (long long)head * p.total_q + sl.q_start + m0;
    gK = reinterpret_cast<const T*>(p.k) + ((long long)sl.k_start * p.heads_kv + head_kv) * D;
    gV = reinterpret_cast<const T*>(p.v) + ((long long)sl.k_start * p.heads_kv + head_kv) * D;
  }
  // K and V rows of key block nb (BN keys; zero past kv_len) into sK/sV (asynchronously).
  template <typename Layout, int BN, int THREADS>
  __device__ __forceinline__ void load_kv(T* sK, T* sV, int nb, int tid) const {
    const int valid = min(BN, sl.kv_len - nb * BN);
    load_tile<Layout, BN, D, THREADS>(sK, gK + nb * BN * kv_stride, kv_stride, valid, gQ, tid);
    load_tile<Layout, BN, D, THREADS>(sV, gV + nb * BN * kv_stride, kv_stride, valid, gQ, tid);
  }
  // The number of key blocks the tile visits. 0: no row sees a key (O = 0 and LSE = -inf are
  // written); otherwise Q and the last key block (keys are walked from the diagonal down, so the
  // masked blocks come first and the bulk runs without mask arithmetic) are loading, committed.
  template <typename Layout, int BN, int THREADS>
  __device__ __forceinline__ int begin(T* sQ, T* sK, T* sV, int tid) const {
    const int n_end = fwd_visible_keys<D, THREADS>(sl, m0, rows, gO, q_stride, gLse, tid);
    if (n_end == 0) return 0;
    const int n_blocks = (n_end + BN - 1) / BN;
    load_tile<Layout, BM, D, THREADS>(sQ, gQ, q_stride, rows, gQ, tid);
    load_kv<Layout, BN, THREADS>(sK, sV, n_blocks - 1, tid);
    cp_async_commit();
    return n_blocks;
  }
};

template <typename T, int D, int BM, int BN, int WARPS>
__device__ __forceinline__ void fwd_kernel(const distca_fwd_params_t& p) {
  using Cfg = FwdConfig<D, BM, BN, WARPS>;
  constexpr int THREADS = Cfg::kThreads;
  constexpr int MT = Cfg::kMT;
  constexpr int NT = BN / 8;   // n-tiles of S
  constexpr int DT = D / 8;    // n-tiles of O
  constexpr float kLog2e = 1.4426950408889634f;
#ifdef DISTCA_FWD_LAZY_RESCALE
  constexpr bool kLazyRescale = true;  // opt-in: its O error exceeded 2x FA2's in 2 of 7 checks (NOTES v5)
#else
  constexpr bool kLazyRescale = false;
#endif
  constexpr float kRescaleLog2 = 8.f;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + Cfg::kSmemQ;                 // [2][BN][D]
  T* sV = sK + 2 * Cfg::kSmemKV;            // [2][BN][D]

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const FwdTile<T, D, BM> tile(p);
  const distca_slice_t& sl = tile.sl;
  const int m0 = tile.m0;
  const int n_blocks = tile.template begin<SwzLayout, BN, THREADS>(sQ, sK, sV, tid);
  if (n_blocks == 0) return;
  const float scale_log2 = p.scale * kLog2e;

  float acc_o[MT][DT][4];
  zero(acc_o);
  float row_max[MT][2], row_sum[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  const int warp_row0 = warp * 16 * MT;  // this warp's first row inside the tile
  // Smallest causal limit of any row in the tile: key blocks entirely at or below it need no
  // causal mask.
  const long long tile_min_limit = (long long)m0 + sl.diagonal;

  for (int it = 0; it < n_blocks; ++it) {
    const int nb = n_blocks - 1 - it;
    const int stage = it & 1;
    if (it + 1 < n_blocks) {
      tile.template load_kv<SwzLayout, BN, THREADS>(sK + (stage ^ 1) * Cfg::kSmemKV, sV + (stage ^ 1) * Cfg::kSmemKV, nb - 1,
                                                    tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const T* cK = sK + stage * Cfg::kSmemKV;
    const T* cV = sV + stage * Cfg::kSmemKV;

    // S = Q K^T
    float s[MT][NT][4];
    zero(s);
    mma_rows_by_rows<T, MT, NT, D, D, D>(s, sQ, warp_row0, cK, 0, lane);

    // Mask keys past kv_len and, when causal, keys past each row's diagonal.
    const int n0 = nb * BN;
    __builtin_assume(n0 >= 0);  // key blocks start inside the slice: no lower-bound test in the mask
    const bool need_mask = !keys_all_visible(sl, n0, BN, tile_min_limit);
    if (need_mask) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const long long limit_a = (long long)m0 + warp_row0 + mt * 16 + (lane >> 2) + sl.diagonal;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = n0 + j * 8 + (lane & 3) * 2 + (e & 1);
            const long long limit = limit_a + ((e & 2) ? 8 : 0);
            if (!key_visible(sl, key, limit)) s[mt][j][e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax. Raw scores; the scale is folded into the exp2 argument. Reductions are
    // trees (short dependency chains: the scheduler has only two warps to switch between).
    // Lazy rescaling: a row keeps its stale running max until the block max exceeds it by more
    // than kRescaleLog2 (log2 units), so P <= 2^kRescaleLog2 (fine in bf16/fp16 and fp32
    // accumulators) and the O rescale (the largest non-MMA cost) is skipped for most blocks.
    bool any_grow = false;
    float alpha[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float t[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) t[j] = fmaxf(s[mt][j][2 * h], s[mt][j][2 * h + 1]);
#pragma unroll
        for (int w = NT / 2; w >= 1; w /= 2) {
#pragma unroll
          for (int j = 0; j < w; ++j) t[j] = fmaxf(t[j], t[j + w]);
        }
        float mx = fmaxf(t[0], __shfl_xor_sync(0xffffffffu, t[0], 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_old = row_max[mt][h];
        const float m_new = fmaxf(m_old, mx);
        // -inf -> finite grows; -inf -> -inf gives NaN > x == false
        const bool grow = kLazyRescale ? (m_new - m_old) * scale_log2 > kRescaleLog2 : m_new > m_old;
        alpha[mt][h] = 1.f;
        if (grow) {
          alpha[mt][h] = fast_exp2((m_old - m_new) * scale_log2);
          row_max[mt][h] = m_new;
          any_grow = true;
        }
      }
    }
    if (__any_sync(0xffffffffu, any_grow)) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < DT; ++j) {
          acc_o[mt][j][0] *= alpha[mt][0];
          acc_o[mt][j][1] *= alpha[mt][0];
          acc_o[mt][j][2] *= alpha[mt][1];
          acc_o[mt][j][3] *= alpha[mt][1];
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // A row that has seen only masked keys keeps max -inf; subtract 0 so exp2 gives 0, not NaN.
        const float m_scaled = row_max[mt][h] == -INFINITY ? 0.f : row_max[mt][h] * scale_log2;
        float t[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const float p0 = fast_exp2(fmaf(s[mt][j][2 * h], scale_log2, -m_scaled));
          const float p1 = fast_exp2(fmaf(s[mt][j][2 * h + 1], scale_log2, -m_scaled));
          s[mt][j][2 * h] = p0;
          s[mt][j][2 * h + 1] = p1;
          t[j] = p0 + p1;
        }
#pragma unroll
        for (int w = NT / 2; w >= 1; w /= 2) {
#pragma unroll
          for (int j = 0; j < w; ++j) t[j] += t[j + w];
        }
        row_sum[mt][h] = row_sum[mt][h] * alpha[mt][h] + t[0];
      }
    }

    // O += P V
    mma_frags_by_cols<T, MT, DT, BN, D>(acc_o, s, cV, lane);
    __syncthreads();  // everyone is done with this stage before it is refilled
  }

  // Epilogue: normalize, stage O through this warp's rows of sQ (only this warp read them),
  // then write 16-byte rows.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = row_sum[mt][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const float lse = l > 0.f ? row_max[mt][h] * p.scale + logf(l) : -INFINITY;
#pragma unroll
      for (int j = 0; j < DT; ++j) {
        acc_o[mt][j][2 * h] *= inv;
        acc_o[mt][j][2 * h + 1] *= inv;
      }
      const int r = warp_row0 + mt * 16 + h * 8 + (lane >> 2);
      if ((lane & 3) == 0 && r < tile.rows) tile.gLse[r] = lse;
    }
  }
  store_frags<T, MT, DT, D>(sQ, acc_o, warp_row0, 0, lane);
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 16 * MT * DT / 32; ++i) {
    const int c = lane + i * 32;
    const int r = warp_row0 + c / DT;
    const int ch = c % DT;
    if (r < tile.rows) {
      *reinterpret_cast<uint4*>(tile.gO + r * tile.q_stride + ch * 8) =
          *reinterpret_cast<const uint4*>(sQ + swz<D>(r, ch * 8));
    }
  }
}

}  // namespace distca
