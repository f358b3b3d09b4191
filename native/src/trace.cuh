// Timing probes for native/bench/trace.py, compiled in a build with -DDISTCA_TRACE_PROBES only
// (-DDISTCA_BWD_TRACE, the older name, works too); the normal images carry none of this.
//
// One thread of each side of a warp-specialized CTA records the SM clock (48 bits) with an event
// kind and an argument (8 bits each) at its waits and steps, up to DISTCA_TRACE_EVENTS per CTA:
// consumer thread 0 into distca_trace, the producer's recording thread into distca_trace_p. The
// forward (fwd_ws_sm90.cuh) and the backward (bwd_ws_sm90.cuh) share the buffers and number their
// events apart (trace.py reads whichever kernel it ran last).
#pragma once

#if defined(DISTCA_BWD_TRACE) && !defined(DISTCA_TRACE_PROBES)
#define DISTCA_TRACE_PROBES
#endif

#ifdef DISTCA_TRACE_PROBES
// (unmangled, for cuModuleGetGlobal)
#define DISTCA_TRACE_CTAS 512
#define DISTCA_TRACE_EVENTS 16384
extern "C" __device__ unsigned long long distca_trace[DISTCA_TRACE_CTAS * DISTCA_TRACE_EVENTS];
extern "C" __device__ int distca_trace_len[DISTCA_TRACE_CTAS];
extern "C" __device__ unsigned long long distca_trace_p[DISTCA_TRACE_CTAS * DISTCA_TRACE_EVENTS];
extern "C" __device__ int distca_trace_p_len[DISTCA_TRACE_CTAS];

namespace distca {

template <bool kProducer = false>
struct Trace {
  int n = 0;
  __device__ __forceinline__ void rec(int kind, int arg = 0) {
    unsigned long long* buf = kProducer ? distca_trace_p : distca_trace;
    if (n < DISTCA_TRACE_EVENTS && blockIdx.x < DISTCA_TRACE_CTAS)
      buf[blockIdx.x * DISTCA_TRACE_EVENTS + n++] = (clock64() & 0xFFFFFFFFFFFFull) |
                                                    ((unsigned long long)(arg & 0xFF) << 48) |
                                                    ((unsigned long long)kind << 56);
  }
  __device__ __forceinline__ void done() {
    if (blockIdx.x < DISTCA_TRACE_CTAS) (kProducer ? distca_trace_p_len : distca_trace_len)[blockIdx.x] = n;
  }
};

}  // namespace distca

// A statement for trace builds only, where cond holds
#define DISTCA_TRACE_IF(cond, ...) \
  do {                             \
    if (cond) {                    \
      __VA_ARGS__;                 \
    }                              \
  } while (0)
#else
#define DISTCA_TRACE_IF(cond, ...) \
  do {                             \
  } while (0)
#endif

// a consumer event (consumer thread `ctid` 0) and a producer event (the producer's `lane` 0)
#define DISTCA_TRACE(...) DISTCA_TRACE_IF(ctid == 0, __VA_ARGS__)
#define DISTCA_TRACE_P(...) DISTCA_TRACE_IF(lane == 0, __VA_ARGS__)
