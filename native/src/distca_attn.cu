// The kernels named in include/distca_attn.h, instantiated per element type and head dimension,
// and the launch-geometry globals the host reads from the module.
#include "bwd.cuh"
#include "bwd_sm90.cuh"
#include "bwd_d256_sm90.cuh"
#include "fwd.cuh"
#include "fwd_sm90.cuh"
#include "fwd_ws_sm90.cuh"
#include "bwd_ws_sm90.cuh"

namespace {

// Tile shapes per head dimension. The host reads them through distca_attn_info_d<HD>. The
// DISTCA_FWD_D<HD>_* macros exist to build variants for benchmarking (native/NOTES.md).
#ifndef DISTCA_FWD_D64_M
#define DISTCA_FWD_D64_M 128
#endif
#ifndef DISTCA_FWD_D64_N
#define DISTCA_FWD_D64_N 64
#endif
#ifndef DISTCA_FWD_D64_WARPS
#define DISTCA_FWD_D64_WARPS 4
#endif
#ifndef DISTCA_BWD_D64_M
#define DISTCA_BWD_D64_M 128
#endif
#ifndef DISTCA_BWD_D64_N
#define DISTCA_BWD_D64_N 128
#endif
#ifndef DISTCA_BWD_D64_WARPS
#define DISTCA_BWD_D64_WARPS 8
#endif
#ifndef DISTCA_BWD_D128_M
#define DISTCA_BWD_D128_M 64
#endif
#ifndef DISTCA_BWD_D128_N
#define DISTCA_BWD_D128_N 128
#endif
#ifndef DISTCA_BWD_D128_WARPS
#define DISTCA_BWD_D128_WARPS 8
#endif
#ifndef DISTCA_FWD_D128_M
#define DISTCA_FWD_D128_M 128
#endif
#ifndef DISTCA_FWD_D128_N
#define DISTCA_FWD_D128_N 64
#endif
#ifndef DISTCA_FWD_D128_WARPS
#define DISTCA_FWD_D128_WARPS 4
#endif

template <int D>
struct Tiles;
template <>
struct Tiles<64> {
  static constexpr int kFwdM = DISTCA_FWD_D64_M, kFwdN = DISTCA_FWD_D64_N, kFwdWarps = DISTCA_FWD_D64_WARPS;
  static constexpr int kBwdM = DISTCA_BWD_D64_M, kBwdN = DISTCA_BWD_D64_N, kBwdWarps = DISTCA_BWD_D64_WARPS;
};
template <>
struct Tiles<128> {
  static constexpr int kFwdM = DISTCA_FWD_D128_M, kFwdN = DISTCA_FWD_D128_N, kFwdWarps = DISTCA_FWD_D128_WARPS;
  static constexpr int kBwdM = DISTCA_BWD_D128_M, kBwdN = DISTCA_BWD_D128_N, kBwdWarps = DISTCA_BWD_D128_WARPS;
};
// head_dim 256 (as FlashAttention-2): 16 query rows per warp (the O accumulators alone take 128
// registers per thread), 64-key backward tiles (dK + dV take 128). Hopper only: these tiles need
// 192 KiB (forward) and 209 KiB (backward) of shared memory per CTA, sm_80 has 163 KiB, and the
// backward's P^T/dS^T tiles cannot shrink below 64 queries (the swizzle spans 64 columns). The
// sm_80 image therefore has no distca_attn_info_d256: hosts there fall back for head_dim 256.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define DISTCA_HAS_D256 1
template <>
struct Tiles<256> {
  static constexpr int kFwdM = 128, kFwdN = 64, kFwdWarps = 8;
  static constexpr int kBwdM = 64, kBwdN = 64, kBwdWarps = 8;
};
#endif
// The forward of head_dim 128 runs on warpgroup MMA in the sm_90a image (fwd_sm90.cuh), unless
// built with -DDISTCA_FWD_SM90=0; head_dim 64 stays on mma.sync (its wgmma version,
// -DDISTCA_FWD_SM90_D64=1, is 5% faster at 16K and 17% slower at 1K causal: native/NOTES.md v6).
#ifndef DISTCA_FWD_SM90
#define DISTCA_FWD_SM90 1
#endif
#ifndef DISTCA_FWD_SM90_D64
#define DISTCA_FWD_SM90_D64 0
#endif
// head_dim 256's forward on warpgroup MMA too (64-key blocks; NOTES v38), unless built with
// -DDISTCA_FWD_SM90_D256=0 (its mma.sync kernel, to compare the two in one job)
#ifndef DISTCA_FWD_SM90_D256
#define DISTCA_FWD_SM90_D256 1
#endif
template <int D>
constexpr bool kFwdWgmma =
#if defined(DISTCA_SM90_WGMMA)
    DISTCA_FWD_SM90 && (D == 128 || (D == 64 && DISTCA_FWD_SM90_D64) || (D == 256 && DISTCA_FWD_SM90_D256));
#else
    false;
#endif
template <int D, bool WGMMA = kFwdWgmma<D>>
struct FwdCfgOf {
  using type = distca::FwdConfig<D, Tiles<D>::kFwdM, Tiles<D>::kFwdN, Tiles<D>::kFwdWarps>;
};
template <int D>
struct FwdCfgOf<D, true> {
  using type = distca::sm90::FwdSm90Config<D>;
};
template <int D>
using FwdCfg = typename FwdCfgOf<D>::type;
// The backward of head_dim 128 runs on warpgroup MMA in the sm_90a image (bwd_sm90.cuh), unless
// built with -DDISTCA_BWD_SM90=0 (to compare the two in one job). head_dim 64 stays on mma.sync:
// its wgmma version (-DDISTCA_BWD_SM90_D64=1) measured no faster (native/NOTES.md v5).
#ifndef DISTCA_BWD_SM90
#define DISTCA_BWD_SM90 1
#endif
#ifndef DISTCA_BWD_SM90_D64
#define DISTCA_BWD_SM90_D64 0
#endif
// head_dim 256's backward on warpgroup MMA (bwd_d256_sm90.cuh; NOTES v39), unless built with
// -DDISTCA_BWD_SM90_D256=0 (its mma.sync kernel)
#ifndef DISTCA_BWD_SM90_D256
#define DISTCA_BWD_SM90_D256 1
#endif
template <int D>
constexpr bool kBwdWgmma =
#if defined(DISTCA_SM90_WGMMA)
    DISTCA_BWD_SM90 && (D == 128 || (D == 64 && DISTCA_BWD_SM90_D64) || (D == 256 && DISTCA_BWD_SM90_D256));
#else
    false;
#endif
template <int D, bool WGMMA = kBwdWgmma<D>>
struct BwdCfgOf {
  using type = distca::BwdConfig<D, Tiles<D>::kBwdM, Tiles<D>::kBwdN, Tiles<D>::kBwdWarps>;
};
template <int D>
struct BwdCfgOf<D, true> {
  using type = distca::sm90::BwdSm90Config<D>;
};
template <int D>
using BwdCfg = typename BwdCfgOf<D>::type;
// Two forward CTAs per SM when their registers (<= 255 each at 128 threads) and smem fit.
template <int D>
constexpr int kFwdMinBlocks = FwdCfg<D>::kThreads <= 128 ? 2 : 1;
template <int D>
constexpr int kBwdMinBlocks = BwdCfg<D>::kThreads <= 128 ? 2 : 1;

constexpr int kElementwiseThreads = 256;

// The warp-specialized TMA forward and backward (fwd_ws_sm90.cuh, bwd_ws_sm90.cuh) of head_dim 64
// and 128 (the forward's also of 256) in the sm_90a image, unless built with -DDISTCA_FWD_WS=0 /
// -DDISTCA_BWD_WS=0. Their tiles are those of fwd_sm90.cuh and bwd_sm90.cuh.
#ifndef DISTCA_FWD_WS
#define DISTCA_FWD_WS 1
#endif
#ifndef DISTCA_BWD_WS
#define DISTCA_BWD_WS 1
#endif
// The forward's also at head_dim 256 (NOTES v40), unless built with -DDISTCA_FWD_WS_D256=0.
#ifndef DISTCA_FWD_WS_D256
#define DISTCA_FWD_WS_D256 1
#endif
template <bool ON>
constexpr bool kSm90Ws =
#if defined(DISTCA_SM90_WGMMA)
    ON;
#else
    false;
#endif
template <int D>
constexpr bool kFwdWs = kSm90Ws<DISTCA_FWD_WS != 0> && (D == 64 || D == 128 || (D == 256 && DISTCA_FWD_WS_D256));
// The backward's also at head_dim 256 (bwd_d256_sm90.cuh; NOTES v51), unless built with
// -DDISTCA_BWD_WS_D256=0.
#ifndef DISTCA_BWD_WS_D256
#define DISTCA_BWD_WS_D256 1
#endif
template <int D>
constexpr bool kBwdWs = kSm90Ws<DISTCA_BWD_WS != 0> && (D == 64 || D == 128 || (D == 256 && DISTCA_BWD_WS_D256));
// Threads and shared memory of the warp-specialized backward of head dim D.
template <int D>
struct BwdWsOf {
  using type = distca::sm90::BwdWsConfig<D == 64 ? 64 : 128>;
  static constexpr int kSmemBytes = type::kSmemBytes;
};
// At head_dim 64 bwd_ws_smem_bytes covers distca_attn_bwd_ws_q128_* too (section 13): one CTA an SM
// either way. (The Python host gives every kernel all of L1 as shared memory; under the Java host's
// default carveout the 64-row kernel's L1 shrinks from about 92 to 28 KiB, at no measurable cost:
// NOTES v82.)
// -DDISTCA_BWD_Q128=0 builds an image without the 128-row kernels (the hosts then never take them),
// whose head_dim 64 backward reserves only what the 64-row kernel needs: the A/B of the two.
#ifndef DISTCA_BWD_Q128
#define DISTCA_BWD_Q128 1
#endif
#if DISTCA_BWD_Q128
template <>
struct BwdWsOf<64> {
  using type = distca::sm90::BwdWsConfig<64>;
  static constexpr int kSmemBytes = type::kSmemBytes > distca::sm90::BwdWsConfig<64, 128>::kSmemBytes
                                        ? type::kSmemBytes
                                        : distca::sm90::BwdWsConfig<64, 128>::kSmemBytes;
  static_assert(distca::sm90::BwdWsConfig<64, 128>::kThreads == type::kThreads, "one block size");
};
#endif
template <>
struct BwdWsOf<256> {
  using type = distca::sm90::BwdWsD256Config;
  static constexpr int kSmemBytes = type::kSmemBytes;
};

// The warp-specialized kernels run the work lists the host builds from the info's tile sizes.
static_assert(distca::sm90::FwdWsConfig<64>::BM == FwdCfg<64>::kBlockM &&
                  distca::sm90::FwdWsConfig<128>::BM == FwdCfg<128>::kBlockM,
              "warp-specialized forward tiles must be fwd_block_m rows");
static_assert(distca::sm90::BwdWsConfig<64>::BN == BwdCfg<64>::kBlockN &&
                  distca::sm90::BwdWsConfig<128>::BN == BwdCfg<128>::kBlockN,
              "warp-specialized backward tiles must be bwd_block_n keys");

template <int D>
constexpr distca_attn_info_t make_info() {
  using Fwd = FwdCfg<D>;
  using Bwd = BwdCfg<D>;
  using Ws = distca::sm90::FwdWsConfig<D>;
  using BwdWs = typename BwdWsOf<D>::type;
  return distca_attn_info_t{DISTCA_ATTN_ABI_VERSION, D,
                            Fwd::kBlockM, Fwd::kBlockN, Fwd::kThreads, Fwd::kSmemBytes,
                            // bwd_block_m: the step of the backward the hosts launch (NOTES v80)
                            kBwdWs<D> ? BwdWs::BM : Bwd::kBlockM, Bwd::kBlockN, Bwd::kThreads, Bwd::kSmemBytes,
                            kElementwiseThreads, 8,
                            kFwdWs<D> ? Ws::kThreads : 0, kFwdWs<D> ? Ws::kSmemBytes : 0,
                            kBwdWs<D> ? BwdWs::kThreads : 0, kBwdWs<D> ? BwdWsOf<D>::kSmemBytes : 0};
}

}  // namespace

extern "C" {
__device__ distca_attn_info_t distca_attn_info_d64 = make_info<64>();
__device__ distca_attn_info_t distca_attn_info_d128 = make_info<128>();
#ifdef DISTCA_HAS_D256
__device__ distca_attn_info_t distca_attn_info_d256 = make_info<256>();
#endif
}

#define DISTCA_DEFINE_KERNELS(DT_NAME, T, D)                                                              \
  extern "C" __global__ void __launch_bounds__(FwdCfg<D>::kThreads, kFwdMinBlocks<D>) \
      distca_attn_fwd_##DT_NAME##_d##D(const distca_fwd_params_t p) {                                      \
    if constexpr (kFwdWgmma<D>) {                                                                         \
      distca::sm90::fwd_kernel<T, D>(p);                                                                  \
    } else {                                                                                              \
      distca::fwd_kernel<T, D, Tiles<D>::kFwdM, Tiles<D>::kFwdN, Tiles<D>::kFwdWarps>(p);                 \
    }                                                                                                     \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(kElementwiseThreads)                                        \
      distca_attn_bwd_pre_##DT_NAME##_d##D(const distca_bwd_params_t p) {                                  \
    distca::bwd_pre_kernel<T, D>(p);                                                                      \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(BwdCfg<D>::kThreads, kBwdMinBlocks<D>) \
      distca_attn_bwd_##DT_NAME##_d##D(const distca_bwd_params_t p) {                                      \
    if constexpr (kBwdWgmma<D> && D == 256) {                                                             \
      distca::sm90::bwd_kernel_d256<T>(p);                                                                \
    } else if constexpr (kBwdWgmma<D>) {                                                                  \
      distca::sm90::bwd_kernel<T, D>(p);                                                                  \
    } else {                                                                                              \
      distca::bwd_kernel<T, D, Tiles<D>::kBwdM, Tiles<D>::kBwdN, Tiles<D>::kBwdWarps>(p);                 \
    }                                                                                                     \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(kElementwiseThreads)                                        \
      distca_attn_bwd_post_##DT_NAME##_d##D(const distca_bwd_params_t p) {                                 \
    distca::bwd_post_kernel<T, D>(p);                                                                     \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(kElementwiseThreads)                                        \
      distca_attn_bwd_post_ws_##DT_NAME##_d##D(const distca_bwd_params_t p) {                              \
    distca::bwd_post_kernel<T, D, true>(p);                                                               \
  }

// The warp-specialized TMA forward and backward main kernel (fwd_ws_sm90.cuh, bwd_ws_sm90.cuh). Their
// parameter blocks carry tensor maps, hence __grid_constant__ (their address is taken). Hosts launch
// them where the info global reports fwd_ws_threads / bwd_ws_threads != 0; elsewhere they trap.
#define DISTCA_DEFINE_FWD_WS(DT_NAME, T, D)                                                                \
  extern "C" __global__ void __launch_bounds__(distca::sm90::FwdWsConfig<D>::kThreads, 1)                 \
      distca_attn_fwd_ws_##DT_NAME##_d##D(const __grid_constant__ distca_fwd_ws_params_t p) {             \
    if constexpr (kFwdWs<D>) {                                                                            \
      distca::sm90::fwd_ws_kernel<T, D>(p);                                                               \
    } else {                                                                                              \
      __trap();                                                                                           \
    }                                                                                                     \
  }
// The warp-specialized backward of head dim D: bwd_ws_sm90.cuh's at 64 and 128, bwd_d256_sm90.cuh's
// at 256 (a template, so that only the one chosen is instantiated).
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_main(const distca_bwd_ws_params_t& p) {
  if constexpr (D == 256) {
    distca::sm90::bwd_ws_kernel_d256<T>(p);
  } else {
    distca::sm90::bwd_ws_kernel<T, D>(p);
  }
}
// The kernel NAME_<DT>_d<D> running BODY<T, D> where the image has the warp-specialized backward.
#define DISTCA_DEFINE_BWD_WS_AS(NAME, BODY, DT_NAME, T, D)                                                 \
  extern "C" __global__ void __launch_bounds__(BwdWsOf<D>::type::kThreads, 1)                             \
      NAME##_##DT_NAME##_d##D(const __grid_constant__ distca_bwd_ws_params_t p) {                          \
    if constexpr (kBwdWs<D>) {                                                                            \
      BODY<T, D>(p);                                                                                      \
    } else {                                                                                              \
      __trap();                                                                                           \
    }                                                                                                     \
  }
#define DISTCA_DEFINE_BWD_WS(DT_NAME, T, D) DISTCA_DEFINE_BWD_WS_AS(distca_attn_bwd_ws, bwd_ws_main, DT_NAME, T, D)
// The warp-specialized backward with group splits (distca_attn.h section 9): bwd_ws_sm90.cuh's at
// head dims 64 and 128, bwd_d256_sm90.cuh's at 256.
template <typename T, int D>
__device__ __forceinline__ void bwd_ws_kv_main(const distca_bwd_ws_params_t& p) {
  if constexpr (D == 256) {
    distca::sm90::bwd_ws_kernel_d256<T, true>(p);
  } else {
    distca::sm90::bwd_ws_kv_kernel<T, D>(p);
  }
}
#define DISTCA_DEFINE_BWD_WS_KV(DT_NAME, T, D) DISTCA_DEFINE_BWD_WS_AS(distca_attn_bwd_ws_kv, bwd_ws_kv_main, DT_NAME, T, D)
// The warp-specialized backward walking the GQA group in chunks (distca_attn.h section 10), head dim 128.
#define DISTCA_DEFINE_BWD_WS_CHUNKED(DT_NAME, T, D) \
  DISTCA_DEFINE_BWD_WS_AS(distca_attn_bwd_ws_chunked, distca::sm90::bwd_ws_chunked_kernel, DT_NAME, T, D)
#define DISTCA_DEFINE_WS(DT_NAME, T, D) \
  DISTCA_DEFINE_FWD_WS(DT_NAME, T, D)   \
  DISTCA_DEFINE_BWD_WS(DT_NAME, T, D)
DISTCA_DEFINE_WS(bf16, __nv_bfloat16, 64)
DISTCA_DEFINE_WS(bf16, __nv_bfloat16, 128)
DISTCA_DEFINE_WS(fp16, __half, 64)
DISTCA_DEFINE_WS(fp16, __half, 128)
DISTCA_DEFINE_BWD_WS_KV(bf16, __nv_bfloat16, 64)
DISTCA_DEFINE_BWD_WS_KV(bf16, __nv_bfloat16, 128)
DISTCA_DEFINE_BWD_WS_KV(fp16, __half, 64)
DISTCA_DEFINE_BWD_WS_KV(fp16, __half, 128)
DISTCA_DEFINE_BWD_WS_CHUNKED(bf16, __nv_bfloat16, 128)
DISTCA_DEFINE_BWD_WS_CHUNKED(fp16, __half, 128)
// The warp-specialized backward with 128-row steps (distca_attn.h section 13), head dim 64.
#define DISTCA_DEFINE_BWD_WS_Q128(DT_NAME, T, D) \
  DISTCA_DEFINE_BWD_WS_AS(distca_attn_bwd_ws_q128, distca::sm90::bwd_ws_q128_kernel, DT_NAME, T, D)
#if DISTCA_BWD_Q128
DISTCA_DEFINE_BWD_WS_Q128(bf16, __nv_bfloat16, 64)
DISTCA_DEFINE_BWD_WS_Q128(fp16, __half, 64)
#endif

DISTCA_DEFINE_KERNELS(bf16, __nv_bfloat16, 64)
DISTCA_DEFINE_KERNELS(bf16, __nv_bfloat16, 128)
DISTCA_DEFINE_KERNELS(fp16, __half, 64)
DISTCA_DEFINE_KERNELS(fp16, __half, 128)
#ifdef DISTCA_HAS_D256
DISTCA_DEFINE_KERNELS(bf16, __nv_bfloat16, 256)
DISTCA_DEFINE_KERNELS(fp16, __half, 256)
DISTCA_DEFINE_WS(bf16, __nv_bfloat16, 256)
DISTCA_DEFINE_WS(fp16, __half, 256)
DISTCA_DEFINE_BWD_WS_KV(bf16, __nv_bfloat16, 256)
DISTCA_DEFINE_BWD_WS_KV(fp16, __half, 256)
#endif
