package io.distca.server.backend;

import io.distca.server.backend.cuda.CudaAvailability;
import io.distca.server.backend.cuda.CudaBackend;
import io.distca.server.backend.cuda.CudaBackendOptions;

/**
 * The seam between backend selection and the CUDA backend: says whether CUDA can run here and
 * creates it (the GPU and the kernels the options name: GPU 0 and the kernels packaged in this jar
 * by default).
 */
final class CudaSupport {
  private CudaSupport() {}

  /** @return null when the CUDA backend can run here with {@code options}, else why not */
  static String unavailableReason(CudaBackendOptions options) {
    return CudaAvailability.unavailableReason(options);
  }

  /** GPUs the CUDA driver reports; 0 where it cannot be asked. */
  static int deviceCount() {
    return CudaAvailability.deviceCount();
  }

  static AttentionBackend create(CudaBackendOptions options) {
    return CudaBackend.open(options);
  }
}
