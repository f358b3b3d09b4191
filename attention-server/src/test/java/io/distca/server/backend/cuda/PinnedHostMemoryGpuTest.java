package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Pinned staging blocks of 2 GiB and more (a fused batch of long documents needs them): JCuda's
 * cuMemHostAlloc binding failed there, so blocks are registered native memory; copies in both
 * directions reach their far end.
 */
@Tag("gpu")
class PinnedHostMemoryGpuTest {
  private static final long BYTES = (2L << 30) + (256L << 20); // 2.25 GiB
  private static final long CHUNK = 1L << 20;

  @Test
  void blocksOverTwoGibibytesArePinnedAndCopyBothWaysAtTheirFarEnd() {
    GpuTests.skipUnlessAvailable(new CudaBackendOptions());
    try (CudaDevice device = CudaDevice.open(0);
        PinnedHostMemory.Block host = new PinnedHostMemory(device).allocate(BYTES, "test block");
        DeviceMemory.Block dev = new DeviceMemory(device).allocate(CHUNK, "test block")) {
      assertEquals(0, host.address() % PinnedHostMemory.PAGE, "page-aligned");
      long far = BYTES - CHUNK; // past 2^31: where an int-sized buffer could not reach
      for (long i = 0; i < CHUNK; i += 8) {
        MemoryUtil.putLong(host.address() + far + i, 0x5DEECE66DL * (i + 1));
      }
      Driver.check("cuMemcpyHtoD", "test upload", () -> cuMemcpyHtoD(dev.at(0), host.at(far), CHUNK));
      Driver.check("cuMemcpyDtoH", "test download", () -> cuMemcpyDtoH(host.at(0), dev.at(0), CHUNK));
      for (long i = 0; i < CHUNK; i += 8) {
        assertEquals(0x5DEECE66DL * (i + 1), MemoryUtil.getLong(host.address() + i), "word at " + i);
      }
    }
  }
}
