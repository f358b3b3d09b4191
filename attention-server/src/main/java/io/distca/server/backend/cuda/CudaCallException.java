package io.distca.server.backend.cuda;

import java.util.Set;

/**
 * A CUDA driver call failed. Names the call, the driver's error name and what the backend was doing,
 * e.g. "cuMemAlloc(536870912 bytes) failed with CUDA_ERROR_OUT_OF_MEMORY while growing device arena
 * of pipeline slot 1".
 */
public class CudaCallException extends RuntimeException {
  private final String call;
  private final int errorCode;
  private final String errorName;

  public CudaCallException(String call, int errorCode, String errorName, String context, Throwable cause) {
    super(call + " failed with " + errorName + " (" + errorCode + ")" + (context == null ? "" : " while " + context), cause);
    this.call = call;
    this.errorCode = errorCode;
    this.errorName = errorName;
  }

  /** The driver function and, where useful, its key arguments. */
  public String call() {
    return call;
  }

  /** The CUresult code, or -1 when JCuda reported the failure without one. */
  public int errorCode() {
    return errorCode;
  }

  public String errorName() {
    return errorName;
  }

  /**
   * The CUresult codes after which the context is unusable for good (CUDA's documentation: "the
   * process must be terminated and relaunched"): an illegal address, a launch that failed or timed
   * out, a device-side assert, a hardware stack error, an illegal or misaligned instruction or
   * address, an invalid PC, an uncorrectable ECC error.
   */
  private static final Set<Integer> CONTEXT_LOST = Set.of(700, 702, 710, 714, 715, 716, 717, 718, 719, 214);

  /** Whether the failed call reports a lost context (every later call in it fails too). */
  public boolean contextLost() {
    return CONTEXT_LOST.contains(errorCode);
  }
}
