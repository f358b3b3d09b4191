package io.distca.server.backend.cuda;

import org.junit.jupiter.api.Assumptions;

/** What the gpu-tagged tests share. */
final class GpuTests {
  private GpuTests() {}

  /** A backend with these options, or the test is skipped (not failed) where no usable GPU and kernels are. */
  static CudaBackend openOrSkip(CudaBackendOptions options) {
    skipUnlessAvailable(options);
    return CudaBackend.open(options);
  }

  /** Skips the test (does not fail it) where no usable GPU and kernels are for these options. */
  static void skipUnlessAvailable(CudaBackendOptions options) {
    String reason = CudaAvailability.unavailableReason(options);
    Assumptions.assumeTrue(reason == null, "no usable GPU: " + reason);
  }
}
