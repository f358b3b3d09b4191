package io.distca.server.backend.cuda;

import static io.distca.server.backend.AttentionFixture.shape;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.Case;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * A real asynchronous fault in the backend's GPU context (a kernel of the same image launched on the
 * same primary context with a parameter block of unmapped addresses: CUDA_ERROR_ILLEGAL_ADDRESS, which
 * poisons the context for good): the batch that meets it fails with the driver's error, every later
 * one fails at once without touching the GPU, and {@link CudaBackend#failure()} says so, which is what
 * takes the attention server out of the dispatcher's plans and fails its readiness and liveness.
 * Tagged gpu-fault, not gpu: the poisoned primary context would fail every test after it in the same
 * JVM, so bin/device-test runs this tag in a JVM of its own, after the others.
 */
@Tag("gpu-fault")
class CudaBackendFaultGpuTest extends AllocatorPerTest {
  private static final long SEED = System.nanoTime();
  private static final Case CASE = new Case("bf16 d64 MHA causal, two documents", shape(4, 4, 64, DType.BF16),
      new int[] {300, 129}, List.of(SliceSpec.causalBottomRight(0, 300, 300), SliceSpec.causalBottomRight(1, 129, 129)));

  /** distca_fwd_params_t (distca_attn.h) whose every pointer is an unmapped address. */
  private static byte[] paramsWithUnmappedPointers() {
    ByteBuffer b = ByteBuffer.allocate(80).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 7; i++) {
      b.putLong(0x10L); // q, k, v, o, lse, slices, work: the first page is never mapped
    }
    b.putInt(128).putInt(128).putInt(1).putInt(1).putInt(1).putFloat(0.125f);
    return b.array();
  }

  @Test
  void aFaultInTheGpuContextFailsEveryLaterBatchAndTheBackendSaysSo() {
    CudaBackendOptions options = new CudaBackendOptions();
    try (CudaBackend backend = GpuTests.openOrSkip(options);
        AttentionFixture before = new AttentionFixture(allocator, CASE.shape(), CASE.segments(), CASE.slices(), SEED);
        AttentionFixture during = new AttentionFixture(allocator, CASE.shape(), CASE.segments(), CASE.slices(), SEED + 1);
        AttentionFixture after = new AttentionFixture(allocator, CASE.shape(), CASE.segments(), CASE.slices(), SEED + 2)) {
      CudaBackend.await(backend.submitForward(before.forwardBatch()));
      assertNull(backend.failure(), "a working backend reports no failure");

      // the fault: a kernel of the backend's own image, on its primary context, reading address 0x10
      backend.gpu().bind();
      try (AttentionKernels faulty = new AttentionKernels(backend.gpu(), KernelImage.find(options))) {
        KernelGeometry g = faulty.geometry(64);
        faulty.launch(DistcaAttnAbi.forwardKernel(DType.BF16, 64), 1, g.forwardThreads(), g.forwardSharedBytes(), null,
            paramsWithUnmappedPointers());
        RuntimeException met = assertThrows(RuntimeException.class,
            () -> CudaBackend.await(backend.submitForward(during.forwardBatch())));
        System.out.println("the batch after the fault: " + met);
      } catch (RuntimeException closing) {
        // unloading a module from a poisoned context may fail too; the backend's state is what counts
        System.out.println("closing the faulty module: " + closing);
      }
      String failure = backend.failure();
      assertNotNull(failure, "the backend must report the fault");
      assertTrue(failure.startsWith("CUDA backend on GPU 0 ("), failure);
      IllegalStateException later = assertThrows(IllegalStateException.class,
          () -> CudaBackend.await(backend.submitForward(after.forwardBatch())));
      assertTrue(later.getMessage().contains("failed earlier"), later.getMessage());
      System.out.println("failure(): " + failure);
    }
  }
}
