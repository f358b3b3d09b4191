package io.distca.server.backend.cuda;

import org.junit.jupiter.api.Assumptions;

/** What the gpu-tagged tests share. */
final class GpuTests {
  private GpuTests() {}

  /** A backend with these options, or the test is skipped (not failed) where no usable GPU and kernels are. */
  static CudaBackend openOrSkip(CudaBackendOptions options) {
    String reason = CudaAvailability.unavailableReason(options);
    Assumptions.assumeTrue(reason == null, "no usable GPU: " + reason);
    return CudaBackend.open(options);
  }
}
