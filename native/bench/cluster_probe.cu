// The mechanisms a two-CTA cluster forward (NOTES v98, "Where the remaining gap is": K/V blocks
// loaded once and multicast to both CTAs) would rest on, each checked on its own by
// cluster_probe.py: a kernel whose cluster size is fixed at compile time (__cluster_dims__) launched
// by a plain cuLaunchKernel, as the JCuda backend launches (JCuda 12.6 has no cuLaunchKernelEx);
// the special registers that name a CTA's rank and cluster; a store into the peer CTA's shared
// memory (mapa + st.shared::cluster); a bulk copy from global memory multicast into both CTAs'
// shared memory, completing each CTA's own mbarrier at the same offset.
//
// Build (sm_90a; the build machine has nvcc, the GPU machine may not):
//   nvcc -cubin -arch=sm_90a -O3 -o native/build/cluster_probe.cubin native/bench/cluster_probe.cu
#include <cstdint>

namespace {

constexpr int kBytes = 4096;  // the multicast copy: 4 KiB, 16-byte aligned at both ends

__device__ __forceinline__ void cluster_sync() {
  asm volatile(
      "barrier.cluster.arrive.release.aligned;\n"
      "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

__device__ __forceinline__ uint32_t special(int which) {
  uint32_t v;
  switch (which) {
    case 0: asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(v)); break;
    case 1: asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(v)); break;
    default: asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(v)); break;
  }
  return v;
}

__device__ __forceinline__ void wait_phase(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred P1;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@P1 bra DONE;\n"
      "bra WAIT;\n"
      "DONE:\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

}  // namespace

// One parameter block per kernel, as the project's kernels take theirs (launched by distca_host.py's
// _launch). out: per CTA, 4 ints (cluster rank, CTAs in the cluster, cluster id, the block index the
// peer stored into this CTA's shared memory) then the kBytes this CTA received by the multicast copy.
// arrived (a zeroed int): every CTA counts itself in and waits, for a bounded time, until all of the
// grid has: out[grid * (4 + kBytes / 4) + b] is 1 where CTA b saw the whole grid resident at once
// (with as much dynamic shared memory as the launch asks for, as a persistent grid would be).
struct ProbeParams {
  int* out;
  const int4* src;
  int* arrived;
};

extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(128)
    distca_cluster_probe(const ProbeParams p) {
  int* const out = p.out;
  const int4* const src = p.src;
  int* const arrived = p.arrived;
  extern __shared__ __align__(16) unsigned char dyn[];  // (only held: the occupancy of a real kernel)
  if (threadIdx.x == 0) {
    atomicAdd(arrived, 1);
    const long long t0 = clock64();
    int seen = 0;
    while ((seen = atomicAdd(arrived, 0)) < static_cast<int>(gridDim.x) && clock64() - t0 < 2000000000LL) {
    }
    out[gridDim.x * (4 + kBytes / 4) + blockIdx.x] = seen >= static_cast<int>(gridDim.x) ? 1 : 0;
    dyn[0] = 0;
  }
  __shared__ __align__(128) int4 buf[kBytes / 16];
  __shared__ __align__(8) uint64_t bar;
  __shared__ int box;
  const uint32_t rank = special(0), nrank = special(1), cid = special(2);
  const uint32_t sbar = static_cast<uint32_t>(__cvta_generic_to_shared(&bar));
  const uint32_t sbuf = static_cast<uint32_t>(__cvta_generic_to_shared(buf));
  if (threadIdx.x == 0) {
    box = -1;
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(sbar));
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  for (int i = threadIdx.x; i < kBytes / 16; i += blockDim.x) buf[i] = make_int4(-1, -1, -1, -1);
  cluster_sync();  // both CTAs' barriers initialized and buffers poisoned before anything reaches them
  if (threadIdx.x == 0) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
                 : "=r"(remote)
                 : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(&box))), "r"(rank ^ 1u));
    asm volatile("st.shared::cluster.u32 [%0], %1;\n" ::"r"(remote), "r"(static_cast<int>(blockIdx.x)) : "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(sbar), "r"(kBytes) : "memory");
  }
  cluster_sync();  // the peer's store is visible (release/acquire at cluster scope)
  if (rank == 0 && threadIdx.x == 0) {  // one copy, landing in both CTAs at buf, completing both bars
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1], %2, [%3], %4;\n" ::"r"(sbuf),
        "l"(src), "r"(kBytes), "r"(sbar), "h"(static_cast<uint16_t>(0x3))
        : "memory");
  }
  wait_phase(sbar, 0);
  int* mine = out + blockIdx.x * (4 + kBytes / 4);
  if (threadIdx.x == 0) {
    mine[0] = static_cast<int>(rank);
    mine[1] = static_cast<int>(nrank);
    mine[2] = static_cast<int>(cid);
    mine[3] = box;
  }
  const int* words = reinterpret_cast<const int*>(buf);
  for (int i = threadIdx.x; i < kBytes / 4; i += blockDim.x) mine[4 + i] = words[i];
  cluster_sync();  // no CTA leaves while its peer may still address its shared memory
}

// A two-stage ring of tensor-map (TMA) loads multicast to both CTAs of the cluster, the pattern of
// the forward's K/V stages: rank 0 loads tile i (64 rows x 32 fp32 columns, 8 KiB, 128-byte swizzle,
// tensor map `tm` of a [rows, 1, 32] fp32 tensor) into stage i % 2 of both CTAs; each CTA's consumer
// warp sums the tile and releases the stage on BOTH CTAs' empty barriers (a local arrive and one
// through mapa + mbarrier.arrive.shared::cluster), so that the issuing CTA reloads a stage only once
// both CTAs have read it; each CTA's producer thread waits for its own empty barrier before it
// arms its own full barrier (arrive.expect_tx) for the stage's next use. p.out[blockIdx.x * n + i]:
// the sum of tile (cluster id * n + i) as this CTA's consumers saw it.
struct alignas(64) Tmap {
  unsigned long long w[16];
};
struct RingParams {
  Tmap tm;  // at offset 0, 128 bytes
  float* out;  // 128
  int n;       // 136
};

extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(64)
    distca_cluster_ring_probe(const __grid_constant__ RingParams p) {
  const Tmap& tm = p.tm;  // (its address is the TMA's operand: hence __grid_constant__)
  float* const out = p.out;
  const int n = p.n;
  __shared__ __align__(1024) float stage[2][64 * 32];
  __shared__ __align__(8) uint64_t full[2], empty[2];
  const uint32_t rank = special(0), cid = special(2);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  auto addr = [](const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); };
  if (threadIdx.x == 0) {
    for (int s = 0; s < 2; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(addr(&full[s])));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 2;\n" ::"r"(addr(&empty[s])));  // both CTAs' consumers
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  cluster_sync();
  if (warp == 0) {
    if (lane == 0) {  // the producer
      for (int i = 0; i < n; ++i) {
        const int s = i & 1;
        wait_phase(addr(&empty[s]), ((i >> 1) & 1) ^ 1);  // (a fresh barrier's "previous" phase passes)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(addr(&full[s])),
                     "r"(64 * 32 * 4)
                     : "memory");
        if (rank == 0) {
          const int row = (static_cast<int>(cid) * n + i) * 64;
          asm volatile(
              "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
              " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(addr(stage[s])),
              "l"(reinterpret_cast<uint64_t>(&tm)), "r"(0), "r"(0), "r"(row), "r"(addr(&full[s])),
              "h"(static_cast<uint16_t>(0x3))
              : "memory");
        }
      }
    }
  } else {  // the consumer warp
    for (int i = 0; i < n; ++i) {
      const int s = i & 1;
      wait_phase(addr(&full[s]), (i >> 1) & 1);
      float sum = 0.f;
      for (int k = lane; k < 64 * 32; k += 32) sum += stage[s][k];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      __syncwarp();
      if (lane == 0) {
        out[blockIdx.x * n + i] = sum;
        uint32_t remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(addr(&empty[s])), "r"(rank ^ 1u));
        asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(addr(&empty[s])) : "memory");
        asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
      }
    }
  }
  cluster_sync();  // no CTA leaves while its peer may still arrive on its barriers or multicast into it
}
