package io.distca.server.backend.cuda;

import static io.distca.server.backend.AttentionFixture.shape;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.Case;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import io.distca.server.backend.Backends;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The CUDA backend on a chosen GPU: every GPU the driver reports runs the kernels and names itself,
 * two GPUs serve batches at the same time from one process (each backend binds its own primary
 * context on the threads that touch it), and a GPU the driver does not have is refused by name.
 * Skipped without a usable GPU; the two-GPU test needs two.
 */
@Tag("gpu")
class CudaMultiDeviceGpuTest extends AllocatorPerTest {
  private static final long SEED = System.nanoTime();
  private static final Case CASE = new Case("bf16 d128 GQA 8/2 causal, documents of 700, 300 and 129 tokens",
      shape(8, 2, 128, DType.BF16), new int[] {700, 300, 129},
      List.of(SliceSpec.causalBottomRight(0, 700, 700), SliceSpec.causalBottomRight(1, 300, 300),
          SliceSpec.causalBottomRight(2, 129, 129)));

  private static int gpusOrSkip(int least) {
    GpuTests.skipUnlessAvailable(new CudaBackendOptions());
    int gpus = CudaAvailability.deviceCount();
    assumeTrue(gpus >= least, "needs " + least + " GPU(s), the CUDA driver reports " + gpus);
    return gpus;
  }

  @Test
  void everyGpuRunsTheKernelsAndSaysWhichItIs() {
    int gpus = gpusOrSkip(1);
    for (int ordinal = 0; ordinal < gpus; ordinal++) {
      try (CudaBackend b = CudaBackend.open(new CudaBackendOptions().deviceOrdinal(ordinal));
          AttentionFixture f = new AttentionFixture(allocator, CASE.shape(), CASE.segments(), CASE.slices(), SEED + ordinal)) {
        assertEquals(ordinal, b.gpu().ordinal());
        assertTrue(b.device().startsWith("GPU " + ordinal + ": "), b.device());
        f.poisonOutputs();
        io.distca.server.backend.AttentionBatch batch = f.forwardBatch();
        CudaBackend.await(b.submitForward(batch));
        CudaBackendGpuTest.assertForwardWithinTheRule(CASE.name() + " on " + b.device(), SEED + ordinal, CASE, f, batch);
      }
    }
  }

  /**
   * GPUs 0 and 1 each take a stream of forward batches from their own thread, at the same time; the
   * same inputs give the same O, bit for bit, on both (the forward's arithmetic order is fixed), and
   * within FlashAttention's rule of the reference.
   */
  @Test
  void twoGpusServeBatchesAtTheSameTimeFromOneProcess() throws Exception {
    gpusOrSkip(2);
    int batches = 6;
    List<List<AttentionFixture>> fixtures = List.of(new ArrayList<>(), new ArrayList<>());
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try (CudaBackend gpu0 = CudaBackend.open(new CudaBackendOptions().deviceOrdinal(0));
        CudaBackend gpu1 = CudaBackend.open(new CudaBackendOptions().deviceOrdinal(1))) {
      CudaBackend[] backends = {gpu0, gpu1};
      for (int g = 0; g < 2; g++) {
        for (int i = 0; i < batches; i++) {
          AttentionFixture f = new AttentionFixture(allocator, CASE.shape(), CASE.segments(), CASE.slices(), SEED + i);
          f.poisonOutputs();
          fixtures.get(g).add(f);
        }
      }
      List<Future<?>> runs = new ArrayList<>();
      for (int g = 0; g < 2; g++) {
        CudaBackend b = backends[g];
        List<AttentionFixture> mine = fixtures.get(g);
        runs.add(pool.submit(() -> {
          List<CompletableFuture<BatchTimings>> inFlight = new ArrayList<>();
          for (AttentionFixture f : mine) {
            inFlight.add(b.submitForward(f.forwardBatch()));
          }
          for (CompletableFuture<BatchTimings> done : inFlight) {
            CudaBackend.await(done);
          }
          return null;
        }));
      }
      for (Future<?> run : runs) {
        run.get();
      }
      for (int i = 0; i < batches; i++) {
        AttentionFixture on0 = fixtures.get(0).get(i);
        AttentionFixture on1 = fixtures.get(1).get(i);
        for (int s = 0; s < CASE.slices().size(); s++) {
          assertSameBits(on0.o.get(s), on1.o.get(s), "O of slice " + s + ", batch " + i);
        }
        assertSameBits(on0.lse, on1.lse, "LSE of batch " + i);
        for (int g = 0; g < 2; g++) {
          AttentionFixture f = fixtures.get(g).get(i);
          CudaBackendGpuTest.assertForwardWithinTheRule(CASE.name() + " on GPU " + g + ", batch " + i, SEED + i, CASE,
              f, f.forwardBatch());
        }
      }
    } finally {
      pool.shutdownNow();
      for (List<AttentionFixture> list : fixtures) {
        for (AttentionFixture f : list) {
          f.close();
        }
      }
    }
  }

  private static void assertSameBits(Tensor a, Tensor b, String what) {
    assertEquals(a.byteSize(), b.byteSize(), what);
    for (long i = 0; i < a.byteSize(); i += 4) {
      int x = a.buffer().getInt(a.byteOffset() + i);
      int y = b.buffer().getInt(b.byteOffset() + i);
      if (x != y) {
        throw new AssertionError(what + ": GPU 0 and GPU 1 differ at byte " + i);
      }
    }
  }

  @Test
  void aGpuTheDriverDoesNotHaveIsRefusedByName() {
    int gpus = gpusOrSkip(1);
    IllegalArgumentException auto = assertThrows(IllegalArgumentException.class,
        () -> Backends.create("auto", 1, 0, gpus).close());
    assertTrue(auto.getMessage().contains("CUDA device " + gpus + " requested, but the CUDA driver reports " + gpus),
        auto.getMessage());
    IllegalStateException cuda = assertThrows(IllegalStateException.class, () -> Backends.create("cuda", 1, 0, gpus).close());
    assertTrue(cuda.getMessage().contains("GPU ordinal " + gpus + " requested"), cuda.getMessage());
    try (AttentionBackend last = Backends.create("cuda", 1, 0, gpus - 1)) {
      assertTrue(last.device().startsWith("GPU " + (gpus - 1) + ": "), last.device());
    }
  }
}
