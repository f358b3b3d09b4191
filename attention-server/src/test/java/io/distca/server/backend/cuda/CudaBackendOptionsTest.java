package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class CudaBackendOptionsTest {

  @Test
  void defaultsConcludeAndFreeze() {
    CudaBackendOptions options = new CudaBackendOptions().conclude();
    assertEquals(0, options.deviceOrdinal());
    assertEquals(CudaBackendOptions.DEFAULT_PIPELINE_DEPTH, options.pipelineDepth());
    assertEquals(CudaBackendOptions.DEFAULT_KERNEL_RESOURCE, options.kernelResource());
    assertTrue(options.stagingThreads() >= 1);
    assertTrue(options.pinnedReceive());
    assertEquals(CudaBackendOptions.DEFAULT_PINNED_POOL_BYTES, options.pinnedPoolBytes());
    assertEquals(CudaBackendOptions.DEFAULT_DIRECT_TRANSFER_MIN_BYTES, options.directTransferMinBytes());
    assertThrows(IllegalStateException.class, () -> options.pinnedReceive(false));
    assertThrows(IllegalStateException.class, () -> options.pipelineDepth(2));
  }

  @Test
  void eachBadSettingIsNamed() {
    assertMessage(new CudaBackendOptions().deviceOrdinal(-1), "ordinal");
    assertMessage(new CudaBackendOptions().pipelineDepth(0), "pipeline depth");
    assertMessage(new CudaBackendOptions().pipelineDepth(17), "pipeline depth");
    assertMessage(new CudaBackendOptions().stagingThreads(0), "staging threads");
    assertMessage(new CudaBackendOptions().transferChunkBytes(-1), "transfer chunk");
    assertMessage(new CudaBackendOptions().initialDeviceBytesPerSlot(-1), "device bytes");
    assertMessage(new CudaBackendOptions().initialPinnedBytesPerSlot(-1), "pinned bytes");
    assertMessage(new CudaBackendOptions().kernelResource(" "), "kernel");
    assertMessage(new CudaBackendOptions().pinnedPoolBytes(0), "pinned pool bytes");
    assertMessage(new CudaBackendOptions().directTransferMinBytes(0), "direct transfer minimum");
    assertMessage(new CudaBackendOptions().persistentCtas(-1), "persistent kernel CTAs");
  }

  private static void assertMessage(CudaBackendOptions options, String fragment) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, options::conclude);
    assertTrue(e.getMessage().contains(fragment), e.getMessage());
  }

  @Test
  void missingKernelsAreAReasonNotACrash() {
    String noResource = CudaAvailability.unavailableReason(new CudaBackendOptions().kernelResource("no/such.fatbin"));
    assertNotNull(noResource);
    assertTrue(noResource.contains("no/such.fatbin"), noResource);

    String noFile = CudaAvailability.unavailableReason(new CudaBackendOptions().kernelFile(Path.of("/nonexistent/k.fatbin")));
    assertTrue(noFile.contains("/nonexistent/k.fatbin"), noFile);

    KernelsUnavailableException e = assertThrows(KernelsUnavailableException.class,
        () -> CudaBackend.open(new CudaBackendOptions().kernelResource("no/such.fatbin")));
    assertTrue(e.getMessage().contains("no/such.fatbin"), e.getMessage());
  }

  /** Whatever this machine has, the probe answers (null or a reason) instead of throwing. */
  @Test
  void probeOfThisMachineAnswers() {
    String reason = CudaAvailability.unavailableReason(new CudaBackendOptions());
    assertTrue(reason == null || !reason.isBlank());
    String again = CudaAvailability.unavailableReason(new CudaBackendOptions());
    assertEquals(reason == null, again == null, "the probe is repeatable (a failed library load stays a reason)");
  }
}
