package io.distca.server.backend.cuda;

import java.util.function.IntSupplier;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Every driver call of the backend goes through {@link #check}, which turns a failure into a
 * {@link CudaCallException} that names the call and what the backend was doing. JCuda's own exceptions
 * are switched on as well ({@link #load()}), so that a call made without a check cannot fail silently.
 */
final class Driver {
  private Driver() {}

  /**
   * Loads the JCuda driver library (which needs the NVIDIA driver's libcuda) and switches JCuda's
   * exceptions on. Throws a {@link LinkageError} when the library cannot load. Idempotent.
   */
  static void load() {
    JCudaDriver.setExceptionsEnabled(true);
  }

  /** cuInit, then the GPUs the driver reports (after CUDA_VISIBLE_DEVICES); {@code context} names why. */
  static int deviceCount(String context) {
    check("cuInit", context, () -> JCudaDriver.cuInit(0));
    int[] count = new int[1];
    check("cuDeviceGetCount", context, () -> JCudaDriver.cuDeviceGetCount(count));
    return count[0];
  }

  static void check(String call, String context, IntSupplier driverCall) {
    int result;
    try {
      result = driverCall.getAsInt();
    } catch (jcuda.CudaException e) {
      throw new CudaCallException(call, codeOf(e.getMessage()), String.valueOf(e.getMessage()), context, e);
    }
    if (result != CUresult.CUDA_SUCCESS) {
      throw new CudaCallException(call, result, CUresult.stringFor(result), context, null);
    }
  }

  /** JCuda's exception message starts with the CUresult name, e.g. "CUDA_ERROR_OUT_OF_MEMORY". */
  static int codeOf(String message) {
    if (message == null || message.isBlank()) {
      return -1;
    }
    String name = message.strip().split("\\s+", 2)[0];
    for (int code = 0; code <= 1000; code++) {
      if (CUresult.stringFor(code).equals(name)) {
        return code;
      }
    }
    return -1;
  }
}
