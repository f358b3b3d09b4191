package io.distca.server.backend.cuda;

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
}
