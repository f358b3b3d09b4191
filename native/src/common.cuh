// Shared device helpers: element types, tensor-core and async-copy PTX wrappers, the swizzled
// shared-memory layout used by every tile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "distca_attn.h"

namespace distca {

// ---- element types -------------------------------------------------------------------------

template <typename T>
struct Elem;

// The two element types differ only in their pair type, conversions and the PTX type name.
#define DISTCA_ELEM(T, T2, PACK2, UNPACK2, PTX)                                                      \
  template <>                                                                                        \
  struct Elem<T> {                                                                                   \
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {                           \
      T2 v = PACK2(lo, hi);                                                                          \
      return *reinterpret_cast<uint32_t*>(&v);                                                       \
    }                                                                                                \
    static __device__ __forceinline__ float2 unpack(uint32_t w) {                                   \
      return UNPACK2(*reinterpret_cast<T2*>(&w));                                                    \
    }                                                                                                \
    /* d += a * b, m16n8k16, fp32 accumulators */                                                   \
    static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { \
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX "." PTX ".f32 "                    \
                   "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                        \
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                  \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                 \
    }                                                                                                \
  };
DISTCA_ELEM(__nv_bfloat16, __nv_bfloat162, __floats2bfloat162_rn, __bfloat1622float2, "bf16")
DISTCA_ELEM(__half, __half2, __floats2half2_rn, __half22float2, "f16")
#undef DISTCA_ELEM

// ---- work lists ----------------------------------------------------------------------------

#ifndef DISTCA_FWD_HEAD_GROUP
#define DISTCA_FWD_HEAD_GROUP 2
#endif
#ifndef DISTCA_BWD_HEAD_GROUP
#define DISTCA_BWD_HEAD_GROUP 1
#endif

// The (work item, head) of CTA blockIdx.x (native/include/distca_attn.h, section 5): the CTAs
// walk the work list once per group of GROUP heads, the heads of a group side by side (GROUP 0:
// all heads in one group, so a tile's heads run side by side; GROUP 1: heads outermost). Which
// CTAs are resident at one time decides what stays in L2: the key tiles of one segment and head
// share its query rows (backward), the query tiles share its keys (forward); with all heads side
// by side, short sequences read them from DRAM again for every tile (native/NOTES.md v8). The
// backward runs its heads outermost; the forward pairs them (its d64 kernel lost 2-4% with the
// heads outermost, nothing with pairs; d128 gained 3-6% on causal sequences of 512 to 4K either way).
template <int GROUP>
struct WorkCoord {
  int index, head;
  // `cta`: the linear tile number (blockIdx.x, or a persistent CTA's current tile); `band_end`:
  // the work list's bands (section 11; nullptr or all zeros: one band), each walked for every head
  // before the next
  __device__ __forceinline__ WorkCoord(int num_work, int heads, int cta, const int32_t* band_end = nullptr) {
    int base = 0;
    if (band_end != nullptr) {
      for (int b = 0; b < DISTCA_WORK_BANDS; ++b) {
        const int end = band_end[b];
        if (end <= base || end >= num_work) break;
        const int band_tiles = (end - base) * heads;
        if (cta < band_tiles) {
          num_work = end;
          break;
        }
        cta -= band_tiles;
        base = end;
      }
      num_work -= base;
    }
    const int group = GROUP == 0 ? heads : GROUP;
    const int chunk = num_work * group;
    const int first = cta / chunk * group;  // first head of this tile's group
    const int g = min(group, heads - first);  // heads in it (the last may be short)
    const int rem = cta - first * num_work;
    const int i = rem / g;
    index = base + i;
    head = first + rem - i * g;
  }
};

// ---- PTX wrappers --------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte global->shared copy; when !valid nothing is read and the destination is zero-filled.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---- the attention mask (distca_attn.h, section 4) ---------------------------------------------
// Key `key` (0-based inside the slice's key range) is visible to the row whose causal limit is
// `limit` (row + diagonal): key < kv_len and, when causal, key <= limit.
__device__ __forceinline__ bool key_visible(const distca_slice_t& sl, int key, long long limit) {
  return key >= 0 && key < sl.kv_len && (!sl.causal || (long long)key <= limit);
}

// For a row whose causal limit is `limit` and the keys k0 + c, c in [0, N) (k0 >= 0): the last c
// that key_visible() accepts, clamped to [-1, N] (-1: none, N: all), so that a mask over a block
// compares each constant column c against one 32-bit bound.
template <int N>
__device__ __forceinline__ int block_last_visible(const distca_slice_t& sl, int k0, long long limit) {
  long long last = (long long)sl.kv_len - 1 - k0;
  if (sl.causal) last = min(last, limit - k0);
  return (int)max(-1LL, min((long long)N, last));
}

// For key `key` of the slice and the queries whose causal limits are limit0 + c, c in [0, N): the
// first c for which key_visible() holds, clamped to [0, N] (N: none; 0: all).
template <int N>
__device__ __forceinline__ int block_first_query(const distca_slice_t& sl, int key, long long limit0) {
  if (key < 0 || key >= sl.kv_len) return N;
  if (!sl.causal) return 0;
  return (int)max(0LL, min((long long)N, (long long)key - limit0));
}

// Whether every key of [k0, k0 + n) (inside the slice's key range) is visible to every row whose
// causal limit is at least min_limit, so that a tile needs no mask.
__device__ __forceinline__ bool keys_all_visible(const distca_slice_t& sl, int k0, int n, long long min_limit) {
  return k0 >= 0 && k0 + n <= sl.kv_len && (!sl.causal || (long long)(k0 + n - 1) <= min_limit);
}

// Whether no key from `k_first` on (inside the slice's key range) is visible to any row whose
// causal limit is at most max_limit.
__device__ __forceinline__ bool keys_hidden_from(const distca_slice_t& sl, int k_first, long long max_limit) {
  return k_first >= sl.kv_len || (sl.causal && (long long)k_first > max_limit);
}

// ---- swizzled tiles ------------------------------------------------------------------------
// A tile is ROWS x COLS 16-bit elements, row-major, where each row's 16-byte chunks are permuted
// by XOR with (row & 7). Eight consecutive rows at the same logical chunk then fall into eight
// different bank groups, so ldmatrix and the fragment stores are conflict-free without padding.
// COLS must be a multiple of 64 (8 chunks).

template <int COLS>
__device__ __forceinline__ int swz(int row, int col) {
  return row * COLS + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

// Copies rows [0, ROWS) of a strided global tile into a shared tile whose element (r, c) is at
// offset(r, c); rows >= valid_rows are zero-filled. `fallback` is any valid global address (read
// never happens for invalid rows).
template <int ROWS, int COLS, int THREADS, typename T, typename Offset>
__device__ __forceinline__ void load_tile_by(T* smem, const T* gmem, long long row_stride, int valid_rows,
                                             const T* fallback, int tid, Offset offset) {
  constexpr int CHUNKS_PER_ROW = COLS / 8;
  constexpr int TOTAL = ROWS * CHUNKS_PER_ROW;
  static_assert(TOTAL % THREADS == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < TOTAL / THREADS; ++i) {
    const int c = tid + i * THREADS;
    const int r = c / CHUNKS_PER_ROW;
    const int ch = c % CHUNKS_PER_ROW;
    const bool valid = r < valid_rows;
    const T* src = valid ? gmem + r * row_stride + ch * 8 : fallback;
    cp_async_16(smem_addr(smem + offset(r, ch * 8)), src, valid);
  }
}

// Shared-tile layouts as types, for code shared by kernels whose tiles differ in layout: at<ROWS,
// COLS>(r, c) is the element offset of (r, c). SwzLayout is swz<COLS> (the mma.sync kernels).
struct SwzLayout {
  template <int ROWS, int COLS>
  static __device__ __forceinline__ int at(int r, int c) {
    return swz<COLS>(r, c);
  }
};

// load_tile_by into a Layout.
template <typename Layout, int ROWS, int COLS, int THREADS, typename T>
__device__ __forceinline__ void load_tile(T* smem, const T* gmem, long long row_stride, int valid_rows,
                                          const T* fallback, int tid) {
  load_tile_by<ROWS, COLS, THREADS>(smem, gmem, row_stride, valid_rows, fallback, tid,
                                    [](int r, int c) { return Layout::template at<ROWS, COLS>(r, c); });
}

// load_tile into the swizzled layout swz<COLS>.
template <int ROWS, int COLS, int THREADS, typename T>
__device__ __forceinline__ void load_tile_async(T* smem, const T* gmem, long long row_stride, int valid_rows,
                                                const T* fallback, int tid) {
  load_tile<SwzLayout, ROWS, COLS, THREADS>(smem, gmem, row_stride, valid_rows, fallback, tid);
}

// ---- ldmatrix addresses in swizzled tiles ----------------------------------------------------
// Every ldmatrix in this code reads 8-row groups starting at a row that is a multiple of 8, at a
// column that is a multiple of 16 plus a per-lane 0 or 8. Then the swizzle XOR key (row & 7) is a
// per-lane constant, and the byte address of lane l's row splits into a per-lane offset (computed
// once) XOR/plus compile-time constants. Writing it that way keeps the compiler from holding one
// register per (row, column) pair across the main loop, which otherwise costs ~60 registers.
template <int COLS>
__device__ __forceinline__ uint32_t ldsm_lane_offset(int row_in_16, int chunk_in_2) {
  return row_in_16 * (COLS * 2) + (((chunk_in_2 ^ row_in_16) & 7) << 4);
}

// Byte address of the 8x8 matrix row of this lane at tile rows [row0, ...), columns [col0, ...);
// row0 % 8 == 0, col0 % 16 == 0.
template <int COLS>
__device__ __forceinline__ uint32_t ldsm_addr(uint32_t tile, uint32_t lane_offset, int row0, int col0) {
  const int ch = col0 >> 3;
  return tile + row0 * (COLS * 2) + ((ch & ~7) << 4) + (lane_offset ^ ((ch & 7) << 4));
}

// ---- warp-level GEMM building blocks -------------------------------------------------------
// Each warp computes acc[MT][NT][4]: MT m16 tiles by NT n8 tiles of fp32 accumulators (the mma C
// layout: lane holds rows lane/4 and lane/4 + 8, columns 2*(lane%4) + {0, 1}). Shared tiles are
// swizzled row-major (swz<COLS>). B fragments are loaded once per k-step and reused by all MT
// m-tiles, which is what makes more rows per warp cheaper in shared-memory traffic.

// acc += A * B^T: A rows [a_row0, a_row0 + 16*MT) of sA [*, KDIM]; B^T's columns are rows
// [b_row0, b_row0 + 8*NT) of sB [*, KDIM] (e.g. S = Q K^T with K stored key-major).
template <typename T, int MT, int NT, int KDIM, int A_COLS, int B_COLS>
__device__ __forceinline__ void mma_rows_by_rows(float (&acc)[MT][NT][4], const T* sA, int a_row0, const T* sB,
                                                 int b_row0, int lane) {
  static_assert(NT % 2 == 0, "n-tiles come in pairs");
  const uint32_t a_base = smem_addr(sA), b_base = smem_addr(sB);
  const uint32_t a_off = ldsm_lane_offset<A_COLS>(lane & 15, lane >> 4);
  const uint32_t b_off = ldsm_lane_offset<B_COLS>((lane >> 4) * 8 + (lane & 7), (lane >> 3) & 1);
#pragma unroll
  for (int ks = 0; ks < KDIM / 16; ++ks) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      ldsm_x4(a[mt], ldsm_addr<A_COLS>(a_base, a_off, a_row0 + mt * 16, ks * 16));
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, ldsm_addr<B_COLS>(b_base, b_off, b_row0 + np * 16, ks * 16));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        Elem<T>::mma(acc[mt][2 * np], a[mt], b[0], b[1]);
        Elem<T>::mma(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// Two independent mma_rows_by_rows products (same shapes and row offsets) interleaved in one
// k-loop, so twice as many independent accumulators hide the mma and ldmatrix latencies.
template <typename T, int MT, int NT, int KDIM, int COLS>
__device__ __forceinline__ void mma_rows_by_rows_x2(float (&acc0)[MT][NT][4], const T* sA0, const T* sB0,
                                                    float (&acc1)[MT][NT][4], const T* sA1, const T* sB1,
                                                    int a_row0, int b_row0, int lane) {
  static_assert(NT % 2 == 0, "n-tiles come in pairs");
  const uint32_t a0 = smem_addr(sA0), b0 = smem_addr(sB0), a1 = smem_addr(sA1), b1 = smem_addr(sB1);
  const uint32_t a_off = ldsm_lane_offset<COLS>(lane & 15, lane >> 4);
  const uint32_t b_off = ldsm_lane_offset<COLS>((lane >> 4) * 8 + (lane & 7), (lane >> 3) & 1);
#pragma unroll
  for (int ks = 0; ks < KDIM / 16; ++ks) {
    uint32_t fa0[MT][4], fa1[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      ldsm_x4(fa0[mt], ldsm_addr<COLS>(a0, a_off, a_row0 + mt * 16, ks * 16));
      ldsm_x4(fa1[mt], ldsm_addr<COLS>(a1, a_off, a_row0 + mt * 16, ks * 16));
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t fb0[4], fb1[4];
      ldsm_x4(fb0, ldsm_addr<COLS>(b0, b_off, b_row0 + np * 16, ks * 16));
      ldsm_x4(fb1, ldsm_addr<COLS>(b1, b_off, b_row0 + np * 16, ks * 16));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        Elem<T>::mma(acc0[mt][2 * np], fa0[mt], fb0[0], fb0[1]);
        Elem<T>::mma(acc0[mt][2 * np + 1], fa0[mt], fb0[2], fb0[3]);
        Elem<T>::mma(acc1[mt][2 * np], fa1[mt], fb1[0], fb1[1]);
        Elem<T>::mma(acc1[mt][2 * np + 1], fa1[mt], fb1[2], fb1[3]);
      }
    }
  }
}

// acc += A * B: A is rows [a_row0, +16*MT) of sA [*, KDIM] (A_TRANS = false), or stored
// transposed as sA [KDIM][*] with A's rows being columns [a_row0, +16*MT) (A_TRANS = true);
// B is columns [b_col0, +8*NT) of sB [KDIM][*] (e.g. O = P V with V stored key-major).
template <typename T, int MT, int NT, int KDIM, int A_COLS, bool A_TRANS, int B_COLS>
__device__ __forceinline__ void mma_rows_by_cols(float (&acc)[MT][NT][4], const T* sA, int a_row0, const T* sB,
                                                 int b_col0, int lane) {
  static_assert(NT % 2 == 0, "n-tiles come in pairs");
  const uint32_t a_base = smem_addr(sA), b_base = smem_addr(sB);
  const uint32_t a_off = A_TRANS ? ldsm_lane_offset<A_COLS>((lane >> 4) * 8 + (lane & 7), (lane >> 3) & 1)
                                 : ldsm_lane_offset<A_COLS>(lane & 15, lane >> 4);
  const uint32_t b_off = ldsm_lane_offset<B_COLS>(((lane >> 3) & 1) * 8 + (lane & 7), lane >> 4);
#pragma unroll
  for (int kk = 0; kk < KDIM / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      if (A_TRANS) {
        ldsm_x4_trans(a[mt], ldsm_addr<A_COLS>(a_base, a_off, kk * 16, a_row0 + mt * 16));
      } else {
        ldsm_x4(a[mt], ldsm_addr<A_COLS>(a_base, a_off, a_row0 + mt * 16, kk * 16));
      }
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4_trans(b, ldsm_addr<B_COLS>(b_base, b_off, kk * 16, b_col0 + np * 16));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        Elem<T>::mma(acc[mt][2 * np], a[mt], b[0], b[1]);
        Elem<T>::mma(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// acc += A * B where A comes from fp32 accumulator fragments c of a previous mma (KDIM/8 n-tiles
// per m-tile; two adjacent n-tiles are exactly one A fragment, so no shuffles) and B is columns
// [0, 8*NT) of sB [KDIM][*].
template <typename T, int MT, int NT, int KDIM, int B_COLS>
__device__ __forceinline__ void mma_frags_by_cols(float (&acc)[MT][NT][4], const float (&c)[MT][KDIM / 8][4],
                                                  const T* sB, int lane) {
  const uint32_t b_base = smem_addr(sB);
  const uint32_t b_off = ldsm_lane_offset<B_COLS>(((lane >> 3) & 1) * 8 + (lane & 7), lane >> 4);
#pragma unroll
  for (int kk = 0; kk < KDIM / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      a[mt][0] = Elem<T>::pack(c[mt][2 * kk][0], c[mt][2 * kk][1]);
      a[mt][1] = Elem<T>::pack(c[mt][2 * kk][2], c[mt][2 * kk][3]);
      a[mt][2] = Elem<T>::pack(c[mt][2 * kk + 1][0], c[mt][2 * kk + 1][1]);
      a[mt][3] = Elem<T>::pack(c[mt][2 * kk + 1][2], c[mt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4_trans(b, ldsm_addr<B_COLS>(b_base, b_off, kk * 16, np * 16));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        Elem<T>::mma(acc[mt][2 * np], a[mt], b[0], b[1]);
        Elem<T>::mma(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

template <int MT, int NT>
__device__ __forceinline__ void zero(float (&acc)[MT][NT][4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[mt][j][0] = acc[mt][j][1] = acc[mt][j][2] = acc[mt][j][3] = 0.f;
  }
}

// Stores accumulator fragments as 16-bit elements at rows [row0, +16*MT), columns
// [col0, +8*NT) of a swizzled shared tile [*][COLS].
template <typename T, int MT, int NT, int COLS>
__device__ __forceinline__ void store_frags(T* tile, const float (&c)[MT][NT][4], int row0, int col0, int lane) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int r = row0 + mt * 16 + (lane >> 2);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int col = col0 + j * 8 + (lane & 3) * 2;
      *reinterpret_cast<uint32_t*>(tile + swz<COLS>(r, col)) = Elem<T>::pack(c[mt][j][0], c[mt][j][1]);
      *reinterpret_cast<uint32_t*>(tile + swz<COLS>(r + 8, col)) = Elem<T>::pack(c[mt][j][2], c[mt][j][3]);
    }
  }
}

}  // namespace distca
