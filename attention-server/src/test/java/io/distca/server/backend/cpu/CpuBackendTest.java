package io.distca.server.backend.cpu;

import static io.distca.server.backend.AttentionFixture.shape;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.Case;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import io.distca.server.backend.ReferenceAttention;
import io.distca.server.backend.ReferenceAttention.ForwardResult;
import io.distca.server.backend.ReferenceAttention.Gradients;
import io.distca.server.backend.Tolerance;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * CpuBackend against the float64 reference on fresh seeded random inputs.
 *
 * <p>Tolerances ({@link Tolerance}): each element within half an ulp of the output dtype relative to
 * the reference value (2^-8 bf16, 2^-11 fp16, 2^-24 fp32) plus a floor for fp32 accumulation of
 * {@value #FORWARD_FLOOR} (forward O) or {@value #BACKWARD_FLOOR} (dQ, dK, dV, which sum over many
 * rows and heads) times the largest |reference| of that tensor; LSE within {@value #LSE_TOLERANCE}
 * * max(1, |lse|), and exactly -inf where the reference has -inf. The floors are about 4-5x the
 * worst fp32 error seen over these cases and 1500 random batches (O: 2.5e-6 of max at head_dim 256;
 * gradients: 2e-5 where a small dK is the sum of larger terms that cancel). A wrong mask, head
 * mapping or missing key moves elements by about 1/keys of their size, far above the floors.
 *
 * <p>Each case runs under three option sets: defaults (2 threads), small blocks (3 threads, every
 * segment split into many chunks, so dQ goes through the accumulators) and odd blocks (1 thread,
 * block sizes that divide nothing).
 */
class CpuBackendTest extends AllocatorPerTest {
  static final double FORWARD_FLOOR = 1e-5;
  static final double BACKWARD_FLOOR = 1e-4;
  static final double LSE_TOLERANCE = 2e-6;

  static List<Case> cases() {
    return List.of(
        new Case("MHA bf16 d64, causal bottom-right q<kv", shape(4, 4, 64, DType.BF16),
            new int[] {300}, List.of(SliceSpec.causalBottomRight(0, 200, 300))),
        new Case("GQA 8/2 bf16 d128, three slices sharing a segment", shape(8, 2, 128, DType.BF16),
            new int[] {260},
            List.of(SliceSpec.causalBottomRight(0, 100, 260), new SliceSpec(0, 0, 160, true, 0, 160),
                SliceSpec.full(0, 40, 150, 30))),
        new Case("MQA fp16 d40, non-causal and causal", shape(4, 1, 40, DType.FP16),
            new int[] {77, 33}, List.of(SliceSpec.full(0, 0, 77, 50), SliceSpec.causalBottomRight(1, 33, 33))),
        new Case("fp32 d256, arbitrary diagonals incl. rows that see nothing", shape(2, 1, 256, DType.FP32),
            new int[] {150},
            List.of(new SliceSpec(0, 0, 150, true, -20, 60), new SliceSpec(0, 13, 100, true, 37, 90),
                new SliceSpec(0, 100, 40, true, -100, 50))),
        new Case("single-token docs, empty slices, kv_len 0", shape(4, 2, 128, DType.BF16),
            new int[] {1, 1, 1, 0, 5},
            List.of(SliceSpec.causalBottomRight(0, 1, 1), SliceSpec.causalBottomRight(1, 1, 1),
                SliceSpec.causalBottomRight(2, 0, 1), new SliceSpec(3, 0, 0, false, 0, 3),
                SliceSpec.causalBottomRight(4, 1, 5), new SliceSpec(4, 2, 0, true, 0, 2))),
        new Case("mixed long and short docs, bf16 GQA 4/2 d64", shape(4, 2, 64, DType.BF16),
            new int[] {700, 130, 9},
            List.of(SliceSpec.causalBottomRight(0, 700, 700), SliceSpec.causalBottomRight(1, 130, 130),
                SliceSpec.causalBottomRight(2, 9, 9))));
  }

  static List<CpuBackendOptions> optionSets() {
    return List.of(
        new CpuBackendOptions().threads(2),
        new CpuBackendOptions().threads(3).queryBlock(16).keyBlock(16).backwardKeyChunk(32),
        new CpuBackendOptions().threads(1).queryBlock(7).keyBlock(5).backwardKeyChunk(10));
  }

  static Stream<Arguments> casesAndOptions() {
    List<Arguments> out = new ArrayList<>();
    for (int c = 0; c < cases().size(); c++) {
      for (int o = 0; o < optionSets().size(); o++) {
        out.add(Arguments.of(cases().get(c), optionSets().get(o), 1000L + 10 * c + o));
      }
    }
    return out.stream();
  }

  @ParameterizedTest(name = "{0} / {1}")
  @MethodSource("casesAndOptions")
  void matchesReference(Case c, CpuBackendOptions options, long seed) {
    try (CpuBackend cpu = new CpuBackend(options)) {
      compare(cpu, c.shape(), c.segments(), c.slices(), seed, c.name());
    }
  }

  /** Random shapes, dtypes, lengths, offsets and diagonals. */
  @Test
  void matchesReferenceOnRandomBatches() {
    long base = System.nanoTime();
    try (CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(3).queryBlock(16).keyBlock(24)
        .backwardKeyChunk(48))) {
      for (int i = 0; i < 12; i++) {
        long seed = base + i;
        Random r = new Random(seed);
        int hkv = 1 + r.nextInt(2);
        int hq = hkv * (1 << r.nextInt(3));
        int d = 1 + r.nextInt(72);
        DType dtype = DType.values()[r.nextInt(3)];
        int[] segments = new int[1 + r.nextInt(3)];
        for (int s = 0; s < segments.length; s++) {
          segments[s] = r.nextInt(120);
        }
        List<SliceSpec> slices = new ArrayList<>();
        for (int s = 1 + r.nextInt(4); s > 0; s--) {
          int seg = r.nextInt(segments.length);
          int kvStart = r.nextInt(segments[seg] + 1);
          int kvLen = r.nextInt(segments[seg] - kvStart + 1);
          int qLen = r.nextInt(90);
          int diagonal = r.nextInt(qLen + 2 * kvLen + 3) - qLen - 1;
          slices.add(new SliceSpec(seg, kvStart, kvLen, r.nextBoolean(), diagonal, qLen));
        }
        compare(cpu, shape(hq, hkv, d, dtype), segments, slices, seed, "random batch");
      }
    }
  }

  /** Calls from several threads share the pool and must not share scratch or outputs. */
  @Test
  void concurrentCallsOnOneBackendAreIndependent() throws Exception {
    try (CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(2).queryBlock(16).keyBlock(16)
        .backwardKeyChunk(32))) {
      List<java.util.concurrent.Future<?>> calls = new ArrayList<>();
      java.util.concurrent.ExecutorService callers = java.util.concurrent.Executors.newFixedThreadPool(3);
      try {
        for (int i = 0; i < 3; i++) {
          long seed = 77 + i;
          int len = 90 + 25 * i;
          calls.add(callers.submit(() -> compare(cpu, shape(4, 2, 32, DType.BF16), new int[] {len},
              List.of(SliceSpec.causalBottomRight(0, len, len)), seed, "concurrent call")));
        }
        for (java.util.concurrent.Future<?> call : calls) {
          call.get();
        }
      } finally {
        callers.shutdownNow();
      }
    }
  }

  private void compare(CpuBackend cpu, AttentionShape shape, int[] segments, List<SliceSpec> slices, long seed,
      String name) {
    String label = name + " (seed " + seed + ", " + cpu.options() + ")";
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, segments, slices, seed)) {
      cpu.forward(fx.forwardBatch());
      ForwardResult expected = fx.referenceForward();
      for (int i = 0; i < slices.size(); i++) {
        Tolerance.assertClose(label + " O of slice " + i, expected.o().get(i), fx.o.get(i), FORWARD_FLOOR);
        Tolerance.assertLseClose(label + " LSE of slice " + i, expected.lse().get(i), fx.lseOf(i), LSE_TOLERANCE);
      }

      // Backward inputs O and LSE come from the reference, so both sides differentiate the same thing.
      try (ReferenceAttention reference = new ReferenceAttention()) {
        reference.forward(fx.forwardBatch());
      }
      cpu.backward(fx.backwardBatch());
      Gradients g = fx.referenceGradients();
      double magnitude = 0; // the batch's gradients: a slice's own dQ (a segment's dK) may cancel to exactly 0
      for (List<double[]> gradients : List.of(g.dq(), g.dk(), g.dv())) {
        for (double[] values : gradients) {
          for (double v : values) {
            magnitude = Math.max(magnitude, Math.abs(v));
          }
        }
      }
      for (int i = 0; i < slices.size(); i++) {
        Tolerance.assertClose(label + " dQ of slice " + i, g.dq().get(i), fx.dq.get(i), BACKWARD_FLOOR, magnitude);
      }
      for (int i = 0; i < segments.length; i++) {
        Tolerance.assertClose(label + " dK of segment " + i, g.dk().get(i), fx.dk.get(i), BACKWARD_FLOOR, magnitude);
        Tolerance.assertClose(label + " dV of segment " + i, g.dv().get(i), fx.dv.get(i), BACKWARD_FLOOR);
      }
    }
  }

  @Test
  void optionsAreValidatedWithTheSettingNamed() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new CpuBackendOptions().threads(0).conclude());
    assertTrue(e.getMessage().contains("threads"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class,
        () -> new CpuBackendOptions().keyBlock(64).backwardKeyChunk(100).conclude());
    assertTrue(e.getMessage().contains("multiple of keyBlock"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new CpuBackendOptions().queryBlock(-1).conclude());
    assertTrue(e.getMessage().contains("queryBlock"), e.getMessage());
    assertEquals(1056, new CpuBackendOptions().keyBlock(48).conclude().backwardKeyChunk(),
        "the default chunk is fitted to the key block");
    CpuBackendOptions concluded = new CpuBackendOptions().conclude();
    assertEquals(Runtime.getRuntime().availableProcessors(), concluded.threads());
    assertThrows(IllegalStateException.class, () -> concluded.threads(2));
  }

  @Test
  void closeIsIdempotentAndLaterCallsFail() {
    AttentionShape shape = shape(2, 1, 8, DType.BF16);
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {4},
        List.of(SliceSpec.causalBottomRight(0, 4, 4)), 5)) {
      CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(2));
      assertEquals("cpu", cpu.name());
      assertEquals("cpu x2 threads", cpu.device());
      cpu.forward(fx.forwardBatch());
      cpu.close();
      assertDoesNotThrow(cpu::close);
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> cpu.forward(fx.forwardBatch()));
      assertTrue(e.getMessage().contains("closed"), e.getMessage());
    }
  }

  @Test
  void malformedBatchIsRejectedBeforeMemoryIsTouched() {
    AttentionShape shape = shape(2, 1, 8, DType.BF16);
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {4},
        List.of(new SliceSpec(0, 1, 4, true, 0, 4)), 6);
        CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(1))) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(fx.forwardBatch()));
      assertTrue(e.getMessage().contains("outside segment 0 of length 4"), e.getMessage());
    }
  }
}
