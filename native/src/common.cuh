// Shared device helpers: element types, tensor-core and async-copy PTX wrappers, the swizzled
// shared-memory layout used by every tile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "distca_attn.h"

namespace distca {

// ---- element types -------------------------------------------------------------------------

template <typename T>
struct Elem;

template <>
struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t w) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&w));
  }
  // d += a * b, m16n8k16, fp32 accumulators
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct Elem<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t w) {
    return __half22float2(*reinterpret_cast<__half2*>(&w));
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
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

// ---- swizzled tiles ------------------------------------------------------------------------
// A tile is ROWS x COLS 16-bit elements, row-major, where each row's 16-byte chunks are permuted
// by XOR with (row & 7). Eight consecutive rows at the same logical chunk then fall into eight
// different bank groups, so ldmatrix and the fragment stores are conflict-free without padding.
// COLS must be a multiple of 64 (8 chunks).

template <int COLS>
__device__ __forceinline__ int swz(int row, int col) {
  return row * COLS + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

// Copies rows [0, ROWS) of a strided global tile into a swizzled shared tile; rows >= valid_rows
// are zero-filled. `fallback` is any valid global address (read never happens for invalid rows).
template <int ROWS, int COLS, int THREADS, typename T>
__device__ __forceinline__ void load_tile_async(T* smem, const T* gmem, long long row_stride, int valid_rows,
                                                const T* fallback, int tid) {
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
    cp_async_16(smem_addr(smem + swz<COLS>(r, ch * 8)), src, valid);
  }
}

// acc (16 x N) += A (16 x KDIM) * B (KDIM x N), where A is given as fp32 accumulator fragments of
// a previous mma (c: KDIM/8 n-tiles; the accumulator layout of two adjacent n-tiles is exactly
// the A-fragment layout, so no shuffles) and B is a swizzled row-major smem tile [KDIM][N].
template <typename T, int KDIM, int N>
__device__ __forceinline__ void mma_acc_frag_by_tile(float (&acc)[N / 8][4], const float (&c)[KDIM / 8][4],
                                                     const T* tile, int lane) {
#pragma unroll
  for (int kk = 0; kk < KDIM / 16; ++kk) {
    uint32_t a[4];
    a[0] = Elem<T>::pack(c[2 * kk][0], c[2 * kk][1]);
    a[1] = Elem<T>::pack(c[2 * kk][2], c[2 * kk][3]);
    a[2] = Elem<T>::pack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[3] = Elem<T>::pack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      const int r = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
      const int col = np * 16 + (lane >> 4) * 8;
      ldsm_x4_trans(b, smem_addr(tile + swz<N>(r, col)));
      Elem<T>::mma(acc[2 * np], a, b[0], b[1]);
      Elem<T>::mma(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

}  // namespace distca
