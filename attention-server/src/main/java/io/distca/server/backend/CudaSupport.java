package io.distca.server.backend;

import io.distca.server.backend.cuda.CudaAvailability;
import io.distca.server.backend.cuda.CudaBackend;
import io.distca.server.backend.cuda.CudaBackendOptions;

/**
 * The seam between backend selection and the CUDA backend: says whether CUDA can run here and
 * creates it (GPU 0 and the kernels packaged in this jar unless the options say otherwise).
 */
final class CudaSupport {
  private CudaSupport() {}

  /** @return null when the CUDA backend can run here, else why not */
  static String unavailableReason() {
    return CudaAvailability.unavailableReason(new CudaBackendOptions());
  }

  static AttentionBackend create(CudaBackendOptions options) {
    return CudaBackend.open(options);
  }
}
