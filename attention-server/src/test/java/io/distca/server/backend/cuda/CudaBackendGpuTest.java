package io.distca.server.backend.cuda;

import static io.distca.server.backend.AttentionFixture.shape;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.Case;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import io.distca.server.backend.QuerySlice;
import io.distca.server.backend.ReferenceAttention;
import io.distca.server.backend.ReferenceAttention.DoubleBatch;
import io.distca.server.backend.ReferenceAttention.ForwardResult;
import io.distca.server.backend.ReferenceAttention.Gradients;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.LongSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * CudaBackend on a real GPU against the float64 reference, by FlashAttention's rule
 * ({@link FlashAttentionRule}), on fresh random inputs (seeded from the clock, printed on failure) with
 * NaN-poisoned outputs. Skipped where {@link CudaAvailability} finds no usable GPU and kernels.
 */
@Tag("gpu")
class CudaBackendGpuTest extends AllocatorPerTest {
  private static CudaBackend backend;
  private static final long SEED = System.nanoTime();

  @BeforeAll
  static void openBackend() {
    backend = GpuTests.openOrSkip(new CudaBackendOptions());
    System.out.println("CUDA backend on " + backend.gpu() + ", seed " + SEED);
  }

  @AfterAll
  static void closeBackend() {
    if (backend != null) {
      backend.close();
      backend.close();
    }
  }

  static List<Case> cases() {
    List<SliceSpec> shortSlices = new ArrayList<>();
    Random r = new Random(1);
    for (int i = 0; i < 24; i++) {
      int kv = 1 + r.nextInt(300);
      int q = 1 + r.nextInt(kv);
      shortSlices.add(i % 3 == 0 ? SliceSpec.full(0, 300 - kv, kv, q) : SliceSpec.causalBottomRight(0, q, kv));
    }
    return List.of(
        new Case("varlen GQA 8/2 bf16 d128 causal: lengths 1..700, two shards of one document",
            shape(8, 2, 128, DType.BF16), new int[] {1, 129, 300, 700, 64},
            List.of(SliceSpec.causalBottomRight(0, 1, 1), SliceSpec.causalBottomRight(1, 129, 129),
                SliceSpec.causalBottomRight(2, 100, 200), SliceSpec.causalBottomRight(2, 100, 300),
                SliceSpec.causalBottomRight(3, 700, 700), SliceSpec.causalBottomRight(4, 64, 64))),
        new Case("MHA fp16 d64 full attention: key offsets, no keys, no rows",
            shape(4, 4, 64, DType.FP16), new int[] {257, 90, 0},
            List.of(SliceSpec.full(0, 13, 200, 77), SliceSpec.full(1, 0, 90, 1), SliceSpec.full(0, 0, 0, 5),
                SliceSpec.full(1, 3, 50, 0), SliceSpec.full(2, 0, 0, 3))),
        new Case("MQA 4/1 bf16 d64 causal, negative and large diagonals (rows that see nothing)",
            shape(4, 1, 64, DType.BF16), new int[] {150, 333},
            List.of(new SliceSpec(0, 0, 150, true, -20, 100), new SliceSpec(1, 33, 300, true, 250, 17),
                new SliceSpec(1, 0, 333, true, -400, 9), new SliceSpec(0, 10, 140, true, 0, 140))),
        new Case("bf16 d128 one document of 1100 tokens", shape(2, 2, 128, DType.BF16), new int[] {1100},
            List.of(SliceSpec.causalBottomRight(0, 1100, 1100))),
        new Case("fp16 d128 GQA 8/4: 24 short slices over one shared segment",
            shape(8, 4, 128, DType.FP16), new int[] {300}, shortSlices),
        new Case("bf16 d128 GQA 8/1 causal, two documents: few key tiles, so the backward splits their groups",
            shape(8, 1, 128, DType.BF16), new int[] {1500, 700},
            List.of(SliceSpec.causalBottomRight(0, 1500, 1500), SliceSpec.causalBottomRight(1, 700, 700))),
        new Case("bf16 d256 GQA 4/2: causal shards of one document, a full slice, tile edges",
            shape(4, 2, 256, DType.BF16), new int[] {333, 65},
            List.of(SliceSpec.causalBottomRight(0, 129, 200), SliceSpec.causalBottomRight(0, 133, 333),
                SliceSpec.full(1, 1, 64, 65), SliceSpec.causalBottomRight(1, 1, 1))));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void forwardMatchesTheReference(Case c) {
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED)) {
      AttentionBatch batch = f.forwardBatch();
      BatchTimings timings = CudaBackend.await(backend.submitForward(batch));
      assertTrue(timings.kernelMillis() >= 0 && timings.endToEndNanos() > 0);

      ForwardResult ref = assertForwardWithinTheRule(c.name(), SEED, c, f, batch);
      assertRowsThatSeeNothingAreZero(c, f, ref);
    }
  }

  /**
   * The forward's O and LSE in {@code f}, computed from {@code batch} (fixture seed {@code seed}),
   * against the float64 reference by FlashAttention's rule; returns the reference.
   */
  static ForwardResult assertForwardWithinTheRule(String what, long seed, Case c, AttentionFixture f,
      AttentionBatch batch) {
    DoubleBatch exact = DoubleBatch.of(batch);
    ForwardResult ref = ReferenceAttention.forward(exact);
    ForwardResult low = LowPrecisionAttention.forward(exact, c.shape().dtype());
    double[] errors = FlashAttentionRule.assertWithin(what + " O (seed " + seed + ")", ref.o(), low.o(), f.o);
    List<double[]> lse = new ArrayList<>();
    for (int i = 0; i < c.slices().size(); i++) {
      lse.add(f.lseOf(i));
    }
    FlashAttentionRule.assertLseWithin(what + " (seed " + seed + ")", ref.lse(), low.lse(), lse);
    System.out.printf("forward %s: max error %.3g, low-precision %.3g, atol %.3g%n", what, errors[0], errors[1], errors[2]);
    return ref;
  }

  private static void assertRowsThatSeeNothingAreZero(Case c, AttentionFixture f, ForwardResult ref) {
    int hq = c.shape().headsQ();
    int d = c.shape().headDim();
    for (int i = 0; i < c.slices().size(); i++) {
      int qLen = c.slices().get(i).qLen();
      for (int h = 0; h < hq; h++) {
        for (int row = 0; row < qLen; row++) {
          if (ref.lse().get(i)[h * qLen + row] == Double.NEGATIVE_INFINITY) {
            for (int e = 0; e < d; e++) {
              assertEquals(0f, f.o.get(i).getFloat(((long) row * hq + h) * d + e), "O of a row that sees no key");
            }
          }
        }
      }
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void backwardMatchesTheReference(Case c) {
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 1)) {
      // O and LSE come from the reference forward, so the backward is judged on its own.
      DoubleBatch exact = DoubleBatch.of(f.forwardBatch());
      ForwardResult fwd = ReferenceAttention.forward(exact);
      int hq = c.shape().headsQ();
      List<double[]> o = new ArrayList<>();
      List<double[]> lse = new ArrayList<>();
      List<double[]> dO = new ArrayList<>();
      for (int i = 0; i < c.slices().size(); i++) {
        ReferenceAttention.fromDoubles(fwd.o().get(i), f.o.get(i));
        o.add(ReferenceAttention.toDoubles(f.o.get(i)));
        int qLen = c.slices().get(i).qLen();
        for (int h = 0; h < hq; h++) {
          for (int row = 0; row < qLen; row++) {
            f.lse.setFloat(f.lseView(i).index(h, row), (float) fwd.lse().get(i)[h * qLen + row]);
          }
        }
        lse.add(f.lseOf(i));
        dO.add(ReferenceAttention.toDoubles(f.dO.get(i)));
      }
      AttentionBatch batch = f.backwardBatch();
      CudaBackend.await(backend.submitBackward(batch));

      Gradients ref = ReferenceAttention.backward(exact, o, lse, dO);
      Gradients low = LowPrecisionAttention.backward(exact, o, lse, dO, c.shape().dtype());
      String seed = " (seed " + (SEED + 1) + ")";
      double[] dq = FlashAttentionRule.assertWithin(c.name() + " dQ" + seed, ref.dq(), low.dq(), f.dq);
      double[] dk = FlashAttentionRule.assertWithin(c.name() + " dK" + seed, ref.dk(), low.dk(), f.dk);
      double[] dv = FlashAttentionRule.assertWithin(c.name() + " dV" + seed, ref.dv(), low.dv(), f.dv);
      System.out.printf("backward %s: dQ %.3g (low %.3g), dK %.3g (low %.3g), dV %.3g (low %.3g)%n",
          c.name(), dq[0], dq[1], dk[0], dk[1], dv[0], dv[1]);
    }
  }

  /** Random mixed batches; each is run alone first, then all of them at once through the pipeline. */
  @Test
  void manyBatchesInFlightGiveTheSameResultsAsOneAtATime() throws Exception {
    Random random = new Random(SEED);
    List<AttentionFixture> fixtures = new ArrayList<>();
    try {
      for (int b = 0; b < 12; b++) {
        int segments = 1 + random.nextInt(4);
        int[] lengths = new int[segments];
        List<SliceSpec> specs = new ArrayList<>();
        for (int g = 0; g < segments; g++) {
          lengths[g] = 1 + random.nextInt(600);
          int q = 1 + random.nextInt(lengths[g]);
          specs.add(SliceSpec.causalBottomRight(g, q, lengths[g]));
        }
        DType dtype = random.nextBoolean() ? DType.BF16 : DType.FP16;
        AttentionShape shape = shape(8, 2, random.nextBoolean() ? 64 : 128, dtype);
        fixtures.add(new AttentionFixture(allocator, shape, lengths, specs, random.nextLong()));
      }
      List<float[]> aloneO = new ArrayList<>();
      List<float[]> aloneLse = new ArrayList<>();
      for (AttentionFixture f : fixtures) {
        backend.forward(f.forwardBatch());
        aloneO.add(concat(f.o));
        aloneLse.add(values(f.lse));
        f.poisonOutputs();
      }
      List<CompletableFuture<BatchTimings>> futures = new ArrayList<>();
      for (AttentionFixture f : fixtures) {
        futures.add(backend.submitForward(f.forwardBatch()));
      }
      for (int b = 0; b < fixtures.size(); b++) {
        CudaBackend.await(futures.get(b));
        assertArrayEquals(aloneO.get(b), concat(fixtures.get(b).o), "O of batch " + b + " (seed " + SEED + ")");
        assertArrayEquals(aloneLse.get(b), values(fixtures.get(b).lse), "LSE of batch " + b);
      }

      // Backward: dQ sums fp32 reduce-adds in any order, and so do dK and dV where the plan splits
      // the key tiles' groups (distca_attn.h section 9: these small 8/2 batches mostly are), so they
      // may differ in the last bits of the accumulation, never by more than rounding.
      List<float[][]> aloneGrads = new ArrayList<>();
      for (AttentionFixture f : fixtures) {
        backend.backward(f.backwardBatch());
        aloneGrads.add(new float[][] {concat(f.dq), concat(f.dk), concat(f.dv)});
        f.poisonGradients();
      }
      futures.clear();
      for (AttentionFixture f : fixtures) {
        futures.add(backend.submitBackward(f.backwardBatch()));
      }
      for (int b = 0; b < fixtures.size(); b++) {
        CudaBackend.await(futures.get(b));
        AttentionFixture f = fixtures.get(b);
        float[][] grads = {concat(f.dq), concat(f.dk), concat(f.dv)};
        String[] names = {"dQ", "dK", "dV"};
        for (int m = 0; m < 3; m++) {
          float[] expected = aloneGrads.get(b)[m];
          float maxAbs = 0;
          for (float e : expected) {
            maxAbs = Math.max(maxAbs, Math.abs(e));
          }
          // One step of the output dtype (2^-7 relative for bf16, 2^-10 for fp16) plus fp32 noise.
          double step = f.shape.dtype() == DType.BF16 ? 0x1p-7 : 0x1p-10;
          for (int i = 0; i < expected.length; i++) {
            double tolerance = step * Math.abs(expected[i]) + 1e-5 * maxAbs;
            assertTrue(Math.abs(grads[m][i] - expected[i]) <= tolerance,
                names[m] + " of batch " + b + " element " + i + ": " + grads[m][i] + " vs " + expected[i]);
          }
        }
      }
    } finally {
      fixtures.forEach(AttentionFixture::close);
    }
  }

  /** Chunked transfers (gather/upload and download/scatter overlap inside a batch) change no bit. */
  @Test
  void chunkedTransfersGiveTheSameResults() {
    List<SliceSpec> specs = List.of(SliceSpec.causalBottomRight(0, 900, 900), SliceSpec.full(1, 5, 600, 333),
        SliceSpec.causalBottomRight(1, 200, 610));
    // (without group splits, whose dK/dV sums land in another order on every run)
    try (CudaBackend chunked = CudaBackend.open(new CudaBackendOptions().transferChunkBytes(64 << 10).groupSplits(false));
        CudaBackend whole = CudaBackend.open(new CudaBackendOptions().groupSplits(false));
        AttentionFixture f = new AttentionFixture(allocator, shape(8, 2, 128, DType.BF16), new int[] {900, 610}, specs, SEED)) {
      Outputs plain = Outputs.run(whole, f);
      f.poisonOutputs();
      Outputs.run(chunked, f).assertBitIdentical(plain, "");
      for (Tensor t : f.dq) {
        for (long i = 0; i < t.numel(); i++) {
          assertTrue(Float.isFinite(t.getFloat(i)), "dQ written");
        }
      }
    }
  }

  /**
   * On Hopper, forwards and backwards of every head dim run on the warp-specialized TMA kernels
   * (distca_attn.h section 7); elsewhere nothing runs on them. At head_dim 128 and 256 they agree
   * with the wgmma kernels on the same batch: O, dK and dV to within one unit in the last place of
   * the element type and the LSE to four fp32 ulps (the arithmetic is the same block step; only the
   * loads differ), dQ to one step of the element type (its fp32 reduce-adds land in a different order
   * on every run). head_dim 64's other kernels are mma.sync ones with other tile shapes, so their
   * roundings differ; there the reference tests above judge both. At head_dim 256 the
   * warp-specialized forward walks 80-key blocks and the other 64-key ones (native/NOTES.md v49), so
   * P is rounded per other blocks: the other forward is judged here by the rule the reference tests
   * apply to this one, and the two backwards (the same 64 x 64 step, native/NOTES.md v51) run on the
   * warp-specialized forward's O and LSE.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void warpSpecializedKernelsAgreeWithTheOthers(Case c) {
    // (without group splits and the chunked walk: their fp32 dK/dV sums in another order may move a
    // rounding by one more step; groupSplitsAgreeWithOneWorkItemPerKeyTile and
    // chunkedWalkAgreesWithHeadByHead compare those with this kernel. The head_dim 256 backward walks
    // in chunks always, which orders its sums as the head-by-head walk wherever a slice has at most
    // a chunk of query tiles, as in the d256 case here.)
    try (CudaBackend ws = CudaBackend.open(new CudaBackendOptions().groupSplits(false).chunkedBackward(false));
        CudaBackend plain = CudaBackend.open(new CudaBackendOptions().warpSpecializedKernels(false));
        AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 2)) {
      long forwards = ws.warpSpecializedForwardLaunches();
      long backwards = ws.warpSpecializedBackwardLaunches();
      ws.forward(f.forwardBatch());
      float[] o = concat(f.o);
      float[] lse = values(f.lse);
      ws.backward(f.backwardBatch());
      float[][] grads = {concat(f.dq), concat(f.dk), concat(f.dv)};
      boolean expected = ws.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null;
      String where = c.name() + " on " + ws.gpu()
          + (TensorMaps.unavailableReason() == null ? "" : " (" + TensorMaps.unavailableReason() + ")");
      assertEquals(expected ? 1 : 0, ws.warpSpecializedForwardLaunches() - forwards, "forwards, " + where);
      assertEquals(expected ? 1 : 0, ws.warpSpecializedBackwardLaunches() - backwards, "backwards, " + where);

      // head_dim 128 and 256: the other kernels are wgmma ones too (d64's are mma.sync, compared by check.py)
      if (!expected || c.shape().headDim() == 64) {
        return;
      }
      f.poisonOutputs();
      AttentionBatch plainBatch = f.forwardBatch();
      plain.forward(plainBatch);
      int ulpShift = c.shape().dtype() == DType.BF16 ? 16 : 13;  // float mantissa 23 bits, bf16 7, fp16 10
      if (c.shape().headDim() == 256) {
        assertEquals(0, plain.warpSpecializedForwardLaunches(), "turned off");
        assertForwardWithinTheRule(c.name() + ", the forward that is not warp-specialized", SEED + 2, c, f, plainBatch);
      } else {
        assertWithinUlps(c.name() + " O", o, concat(f.o), ulpShift);
        assertWithinUlps(c.name() + " LSE", lse, values(f.lse), 2);
      }
      // The backward's inputs again: the warp-specialized forward's O and LSE.
      restore(f.o, o);
      restore(List.of(f.lse), lse);
      plain.backward(f.backwardBatch());
      assertEquals(0, plain.warpSpecializedForwardLaunches() + plain.warpSpecializedBackwardLaunches(), "turned off");
      assertWithinUlps(c.name() + " dK", grads[1], concat(f.dk), ulpShift);
      assertWithinUlps(c.name() + " dV", grads[2], concat(f.dv), ulpShift);
      assertDqWithinOneStep(c, grads[0], concat(f.dq));
    }
  }

  /** dQ's fp32 reduce-adds land in a different order on every run: equal to one step of the element type. */
  private static void assertDqWithinOneStep(Case c, float[] expected, float[] dq) {
    assertWithinOneStep(c, "dQ", expected, dq);
  }

  private static void assertWithinOneStep(Case c, String what, float[] expected, float[] actual) {
    assertWithinOneStep(c, what, expected, actual, 1e-5);
  }

  /**
   * {@code actual} within one step of the element type of {@code expected}, or within {@code floor}
   * times the largest expected magnitude (for elements that are small sums of large, cancelling terms).
   */
  private static void assertWithinOneStep(Case c, String what, float[] expected, float[] actual, double floor) {
    assertEquals(expected.length, actual.length, c.name() + " " + what + " sizes");
    float maxAbs = 0;
    for (float e : expected) {
      maxAbs = Math.max(maxAbs, Math.abs(e));
    }
    double step = c.shape().dtype() == DType.BF16 ? 0x1p-7 : 0x1p-10;
    for (int i = 0; i < actual.length; i++) {
      assertTrue(Math.abs(actual[i] - expected[i]) <= step * Math.abs(expected[i]) + floor * maxAbs,
          c.name() + " " + what + " element " + i + ": " + actual[i] + " vs " + expected[i]);
    }
  }

  /**
   * The warp-specialized kernels are persistent: however few CTAs walk the tiles (1 and 3 here, so
   * that each runs many tiles, keyless ones included, through its Q buffers (one at head_dim 256),
   * the K/V buffers and every pipeline phase), every tile computes bit for bit what it computes with
   * one CTA per SM: O, LSE, dK and dV; dQ to one step (its reduce-adds land in another order on
   * every run).
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void persistentKernelsComputeTheSameOnAnyGrid(Case c) {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized kernels for " + c.name() + " on " + backend.gpu());
    // without group splits (their dK/dV sums land in another order on every run: groupSplits... below)
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 3);
        CudaBackend whole = CudaBackend.open(new CudaBackendOptions().groupSplits(false))) {
      Outputs onePerSm = Outputs.run(whole, f);
      for (int ctas : new int[] {1, 3}) {
        try (CudaBackend few = CudaBackend.open(new CudaBackendOptions().persistentCtas(ctas).groupSplits(false))) {
          f.poisonOutputs();
          Outputs fewer = Outputs.run(few, f);
          String with = " with " + ctas + " CTAs";
          assertEquals(1, few.warpSpecializedForwardLaunches(), c.name() + with);
          assertEquals(1, few.warpSpecializedBackwardLaunches(), c.name() + with);
          fewer.assertBitIdentical(onePerSm, c.name() + with);
          assertDqWithinOneStep(c, onePerSm.dq, fewer.dq);
        }
      }
    }
  }

  /**
   * distca_attn.h section 9: where a batch's key tiles are few and long (one K/V head for 8 query
   * heads, causal documents of 1500 and 700 tokens), the backward splits their GQA groups over
   * several work items, whose partial dK and dV meet in an fp32 workspace; the same batch with one
   * work item per key tile gives dK and dV to one step of the element type (fp32 sums in another
   * order), and dQ likewise. The batches that the policy leaves whole do not count as split.
   */
  @Test
  void groupSplitsAgreeWithOneWorkItemPerKeyTile() {
    Case c = cases().stream().filter(x -> x.name().contains("splits their groups")).findFirst().orElseThrow();
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized backward on " + backend.gpu());
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 4);
        CudaBackend whole = CudaBackend.open(new CudaBackendOptions().groupSplits(false))) {
      backend.forward(f.forwardBatch());
      long split = backend.groupSplitBackwardLaunches();
      backend.backward(f.backwardBatch());
      assertEquals(1, backend.groupSplitBackwardLaunches() - split, "the backward split the key tiles' groups");
      assertBackwardAgrees(c, f, whole, whole::groupSplitBackwardLaunches);
      // a batch whose groups have one head is never split
      Case many = cases().get(1);  // MHA: a group of one head has nothing to split
      assertRunsWithout(many, SEED + 5, backend::groupSplitBackwardLaunches, " is not split");
    }
  }

  /**
   * native/NOTES.md v69 through the backend: eight causal 2K documents at 16/2, which the schedule
   * model leaves unsplit, split on a GPU with little DRAM bandwidth per SM (an H100) and stay whole
   * on one with more (an H200); the split backward agrees with the unsplit one.
   */
  @Test
  void largeGroupsSplitAtShortWalksWhereDramIsLean() {
    double dram = backend.gpu().dramBytesPerSm();
    int[] documents = new int[8];
    Arrays.fill(documents, 2048);
    assertCausalDocumentsSplitAndAgree(16, 2, documents, SEED + 8, 1e-5, FusedBatchPlan.leanDram(dram),
        "split iff the GPU's DRAM bandwidth per SM (" + dram / 1e9 + " GB/s) is under the rule's");
  }

  /**
   * native/NOTES.md v70 through the backend: eight causal documents of 128 to 2,048 tokens at 8/1,
   * where the schedule model splits the longer key tiles into more pieces than the shorter ones,
   * split on any Hopper GPU with every key tile in four pieces of two heads (the 128-token documents'
   * single key tiles too); the split backward agrees with the unsplit one.
   */
  @Test
  void largeGroupsSplitUniformlyOnAMixOfShortCausalDocuments() {
    assertCausalDocumentsSplitAndAgree(8, 1, new int[] {2048, 1536, 1024, 768, 512, 384, 256, 128}, SEED + 9, 1e-5,
        true, "split");
  }

  /**
   * native/NOTES.md v71 through the backend: causal documents of 5,000, 700 and 128 tokens at 20/1
   * (one-head walks of 79 steps), which the schedule model splits into one to twenty pieces a key
   * tile, split on any Hopper GPU with every key tile in eight pieces of two or three heads; the split
   * backward agrees with the unsplit one to one bf16 step, or to 1e-4 of the largest element where
   * an element is a small sum of large terms: dK and dV sum 20 heads x up to 5,000 rows in fp32, and
   * two orders of that sum differ beyond one step plus 1e-5 of the largest element in a few elements
   * (on an H100 the split kernel with whole groups against the chunked walk, no pieces at all, as
   * well: native/NOTES.md v71), where a head or a key tile's piece missing or added would differ by
   * a head's share (about 5%).
   */
  @Test
  void largeGroupsSplitUniformlyOnLongCausalDocuments() {
    assertCausalDocumentsSplitAndAgree(20, 1, new int[] {5000, 700, 128}, SEED + 10, 1e-4, true, "split");
  }

  /**
   * native/NOTES.md v79 through the backend: head_dim 256's split kernel (distca_attn_bwd_ws_kv_*_d256).
   * Causal documents of 1,500 and 700 tokens at 8/1 (one-head walks of 12-64 steps of its 64-key
   * tiles), which the schedule model splits for the longer key tiles only, split with every key tile
   * in four pieces of two heads, the work list in head order (FusedBatchPlan.l2OrderPieces); the split
   * backward agrees with the unsplit one.
   */
  @Test
  void headDim256GroupsSplitOnShortCausalDocuments() {
    assertCausalDocumentsSplitAndAgree(8, 1, 256, new int[] {1500, 700}, SEED + 11, 1e-5, true, "split");
  }

  /**
   * The same kernel where the walks are 32-64 steps: causal documents of 3,000, 1,100, 700 and 300
   * tokens at 8/1, every key tile in four pieces of two heads, in head order as above; the split
   * backward agrees with the unsplit one to one bf16 step, or to 1e-4 of the largest element where an
   * element is a small sum of large terms (dK and dV sum 8 heads x up to 3,000 rows in fp32, in
   * another order; a head or a piece missing would differ by a head's share, about 12%).
   */
  @Test
  void headDim256GroupsSplitOnLongerCausalDocuments() {
    assertCausalDocumentsSplitAndAgree(8, 1, 256, new int[] {3000, 1100, 700, 300}, SEED + 12, 1e-4, true, "split");
  }

  /**
   * native/NOTES.md v80 through the backend: a group of 24 heads at head_dim 256 over causal documents
   * of 1,500 and 700 tokens, which v79's policy left to the model (longest first), split with every
   * key tile in eight pieces of three heads in head order (FusedBatchPlan.l2OrderPieces); the split
   * backward agrees with the unsplit one to one bf16 step, or to 1e-4 of the largest element where
   * an element is a small sum of large terms (dK and dV sum 24 heads; a head missing would differ by
   * about 4%).
   */
  @Test
  void headDim256WideGroupsSplitInHeadOrder() {
    assertCausalDocumentsSplitAndAgree(24, 1, 256, new int[] {1500, 700}, SEED + 13, 1e-4, true, "split");
  }

  /**
   * native/NOTES.md v80: the image tells the hosts' cost model the query rows of a step of the
   * backward that runs, on Hopper the warp-specialized one's 64 at head_dim 64 and 128 (the
   * mma.sync kernel of head_dim 64 steps 128 rows, which the split policy took for the step before).
   */
  @Test
  void imageGivesTheWarpSpecializedBackwardsStep() {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized backward on " + backend.gpu());
    backend.gpu().bind();
    try (AttentionKernels kernels = new AttentionKernels(backend.gpu(), KernelImage.find(new CudaBackendOptions()))) {
      for (int headDim : new int[] {64, 128}) {
        KernelGeometry g = kernels.geometry(headDim);
        assertTrue(g.backwardWsThreads() > 0, "d" + headDim + ": the warp-specialized backward is in the image");
        assertEquals(64, g.backwardBlockM(), "d" + headDim + ": its step's query rows");
        assertEquals(128, g.backwardBlockN(), "d" + headDim + ": key rows of a work item");
      }
    }
  }

  /**
   * distca_attn.h section 13 (native/NOTES.md v81, v87): a head_dim 64 batch of long slices (two full
   * documents of 2,100 and 2,600 tokens, a causal one of 4,200, GQA 8/4) runs backward in one launch
   * of the kernel with 128-row steps and gives the gradients of the 64-row one to one step of the
   * element type; a batch whose short causal document holds more than a quarter of the work stays on
   * the 64-row kernel.
   */
  @Test
  void headDim64LongSlicesTakeQ128StepsAndAgree() {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized backward on " + backend.gpu());
    int[] docs = {2100, 2600, 4200};
    Case c = new Case("bf16 d64 GQA 8/4: full documents of 2,100 and 2,600 tokens, a causal one of 4,200",
        shape(8, 4, 64, DType.BF16), docs, List.of(SliceSpec.full(0, 0, docs[0], docs[0]),
            SliceSpec.full(1, 0, docs[1], docs[1]), SliceSpec.causalBottomRight(2, docs[2], docs[2])));
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 14);
        CudaBackend steps64 = CudaBackend.open(new CudaBackendOptions().q128Backward(false))) {
      backend.forward(f.forwardBatch());
      long before = backend.q128BackwardLaunches();
      backend.backward(f.backwardBatch());
      assertEquals(1, backend.q128BackwardLaunches() - before, c.name() + ": 128-row steps");
      assertBackwardAgrees(c, f, steps64, steps64::q128BackwardLaunches);
    }
    int[] mixed = {1600, 2500};  // (work 1,600^2 against the causal 2,500^2 / 2: 45% in the short one)
    assertRunsWithout(new Case("bf16 d64 MHA 4/4: a full document of 1,600 tokens, a causal one of 2,500",
            shape(4, 4, 64, DType.BF16), mixed, List.of(SliceSpec.full(0, 0, mixed[0], mixed[0]),
                SliceSpec.causalBottomRight(1, mixed[1], mixed[1]))),
        SEED + 15, backend::q128BackwardLaunches, ": a short causal slice with 45% of the work keeps the 64-row steps");
  }

  /** {@link #assertCausalDocumentsSplitAndAgree(int, int, int, int[], long, double, boolean, String)} at head_dim 128. */
  private void assertCausalDocumentsSplitAndAgree(int headsQ, int headsKv, int[] documents, long seed, double floor,
      boolean split, String why) {
    assertCausalDocumentsSplitAndAgree(headsQ, headsKv, 128, documents, seed, floor, split, why);
  }

  /**
   * Causal documents of the given lengths at {@code headsQ}/{@code headsKv}, bf16, head dim {@code
   * headDim}, run backward on {@link #backend} in one group-split launch iff {@code split} ({@code
   * why} says when), agree with the unsplit backward (floor: {@link #assertWithinOneStep(Case, String,
   * float[], float[], double)}'s).
   */
  private void assertCausalDocumentsSplitAndAgree(int headsQ, int headsKv, int headDim, int[] documents, long seed,
      double floor, boolean split, String why) {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized backward on " + backend.gpu());
    List<SliceSpec> slices = new ArrayList<>();
    for (int d = 0; d < documents.length; d++) {
      slices.add(SliceSpec.causalBottomRight(d, documents[d], documents[d]));
    }
    Case c = new Case("bf16 d" + headDim + " GQA " + headsQ + "/" + headsKv + ": causal documents "
        + Arrays.toString(documents), shape(headsQ, headsKv, headDim, DType.BF16), documents, slices);
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), seed);
        CudaBackend whole = CudaBackend.open(new CudaBackendOptions().groupSplits(false))) {
      backend.forward(f.forwardBatch());
      long before = backend.groupSplitBackwardLaunches();
      backend.backward(f.backwardBatch());
      assertEquals(split ? 1 : 0, backend.groupSplitBackwardLaunches() - before, c.name() + ": " + why);
      assertBackwardAgrees(c, f, whole, whole::groupSplitBackwardLaunches, floor);
    }
  }

  /**
   * Runs {@code f}'s backward again on {@code other}, which {@code launches} must not count (the
   * variant turned off), and compares its dQ, dK and dV with those in {@code f} to one step of the
   * element type.
   */
  private static void assertBackwardAgrees(Case c, AttentionFixture f, CudaBackend other, LongSupplier launches) {
    assertBackwardAgrees(c, f, other, launches, 1e-5);
  }

  /** As above, with {@code floor} for {@link #assertWithinOneStep(Case, String, float[], float[], double)}. */
  private static void assertBackwardAgrees(Case c, AttentionFixture f, CudaBackend other, LongSupplier launches,
      double floor) {
    float[][] first = {concat(f.dq), concat(f.dk), concat(f.dv)};
    f.poisonGradients();
    other.backward(f.backwardBatch());
    assertEquals(0, launches.getAsLong(), "turned off");
    String[] names = {"dQ", "dK", "dV"};
    float[][] again = {concat(f.dq), concat(f.dk), concat(f.dv)};
    for (int m = 0; m < 3; m++) {
      assertWithinOneStep(c, names[m], again[m], first[m], floor);
    }
  }

  /** Runs {@code c} forward and backward on {@link #backend}, which {@code launches} does not count. */
  private void assertRunsWithout(Case c, long seed, LongSupplier launches, String what) {
    try (AttentionFixture g = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), seed)) {
      long before = launches.getAsLong();
      backend.forward(g.forwardBatch());
      backend.backward(g.backwardBatch());
      assertEquals(before, launches.getAsLong(), c.name() + what);
    }
  }

  /**
   * distca_attn.h section 10: a GQA group of 8 query heads (16/2) walked in chunks of query tiles
   * gives the gradients of the head-by-head walk to one step of the element type (dQ's fp32 sums
   * in another order; dK and dV in the same order per key tile, but over the heads' tiles in
   * another), on causal documents longer than a chunk, a causal shard and a full slice whose walk
   * starts mid-slice (the rotation). Groups of 4 stay on the head-by-head kernel.
   */
  @Test
  void chunkedWalkAgreesWithHeadByHead() {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no warp-specialized backward on " + backend.gpu());
    Case c = new Case("bf16 d128 GQA 16/2: causal documents, a causal shard, a full slice",
        shape(16, 2, 128, DType.BF16), new int[] {1500, 900, 1300},
        List.of(SliceSpec.causalBottomRight(0, 1500, 1500), SliceSpec.causalBottomRight(1, 900, 900),
            SliceSpec.causalBottomRight(1, 300, 700), SliceSpec.full(2, 0, 1300, 1100)));
    // without group splits, which would take these few key tiles to the kernel of section 9
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 6);
        CudaBackend chunked = CudaBackend.open(new CudaBackendOptions().groupSplits(false));
        CudaBackend headByHead = CudaBackend.open(new CudaBackendOptions().groupSplits(false).chunkedBackward(false))) {
      chunked.forward(f.forwardBatch());
      chunked.backward(f.backwardBatch());
      assertEquals(1, chunked.chunkedBackwardLaunches(), "the 16/2 backward walked in chunks");
      assertBackwardAgrees(c, f, headByHead, headByHead::chunkedBackwardLaunches);
    }
    Case four = cases().get(0);  // GQA 8/2: a group of 4 heads
    assertRunsWithout(four, SEED + 7, backend::chunkedBackwardLaunches, " is not walked in chunks");
  }

  /**
   * distca_attn.h section 11: causal documents of 4,000, 1,000, 500 and 200 tokens, whose few long
   * tiles the host puts in bands (forward and backward: WorkBands), compute what the head-by-head
   * order computes: at 8/8 O, LSE, dK and dV bit for bit (each tile is the same CTA's work in either
   * order), dQ to one step (its reduce-adds in another order); at 16/4, whose backward splits its
   * groups and bands the pieces, O and LSE bit for bit, the gradients to one step.
   */
  @Test
  void workListBandsComputeWhatTheHeadByHeadOrderDoes() {
    assumeTrue(backend.gpu().computeMajor() == 9 && TensorMaps.unavailableReason() == null,
        "no persistent kernels on " + backend.gpu());
    int[] documents = {4000, 1000, 500, 200};
    List<SliceSpec> slices = new ArrayList<>();
    for (int d = 0; d < documents.length; d++) {
      slices.add(SliceSpec.causalBottomRight(d, documents[d], documents[d]));
    }
    try (CudaBackend headByHead = CudaBackend.open(new CudaBackendOptions().workBands(false))) {
      for (int[] heads : new int[][] {{8, 8}, {16, 4}}) {
        Case c = new Case("bf16 d128 " + heads[0] + "/" + heads[1] + ": causal documents " + Arrays.toString(documents),
            shape(heads[0], heads[1], 128, DType.BF16), documents, slices);
        try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 11)) {
          long before = backend.bandedLaunches();
          Outputs banded = Outputs.run(backend, f);
          assertEquals(2, backend.bandedLaunches() - before, c.name() + ": forward and backward in bands");
          f.poisonOutputs();
          Outputs plain = Outputs.run(headByHead, f);
          assertEquals(0, headByHead.bandedLaunches(), "bands turned off");
          if (heads[0] == heads[1]) {
            banded.assertBitIdentical(plain, c.name());
          } else {
            assertArrayEquals(plain.o, banded.o, c.name() + " O");
            assertArrayEquals(plain.lse, banded.lse, c.name() + " LSE");
            assertWithinOneStep(c, "dK", plain.dk, banded.dk);
            assertWithinOneStep(c, "dV", plain.dv, banded.dv);
          }
          assertDqWithinOneStep(c, plain.dq, banded.dq);
        }
      }
    }
  }

  /** Equal (the same value, or both the poison of an element nobody owns), or within 2^ulpShift fp32 ulps. */
  private static void assertWithinUlps(String what, float[] a, float[] b, int ulpShift) {
    assertEquals(a.length, b.length, what + " sizes");
    for (int i = 0; i < a.length; i++) {
      float tolerance = Math.scalb(Math.ulp(Math.max(Math.abs(a[i]), Math.abs(b[i]))), ulpShift);
      assertTrue(Float.compare(a[i], b[i]) == 0 || Math.abs(a[i] - b[i]) <= tolerance,
          what + " element " + i + ": " + a[i] + " vs " + b[i]);
    }
  }

  @Test
  void submissionsFromSeveralThreadsAllComplete() throws Exception {
    ExecutorService threads = Executors.newFixedThreadPool(4);
    List<AttentionFixture> fixtures = new ArrayList<>();
    try {
      List<float[]> alone = new ArrayList<>();
      for (int b = 0; b < 16; b++) {
        int len = 50 + 37 * b;
        AttentionFixture f = new AttentionFixture(allocator, shape(4, 4, 64, DType.BF16), new int[] {len},
            List.of(SliceSpec.causalBottomRight(0, len, len)), SEED + b);
        fixtures.add(f);
        backend.forward(f.forwardBatch());
        alone.add(concat(f.o));
        f.poisonOutputs();
      }
      List<Future<BatchTimings>> results = new ArrayList<>();
      for (AttentionFixture f : fixtures) {
        results.add(threads.submit(() -> CudaBackend.await(backend.submitForward(f.forwardBatch()))));
      }
      for (int b = 0; b < fixtures.size(); b++) {
        results.get(b).get();
        assertArrayEquals(alone.get(b), concat(fixtures.get(b).o), "batch " + b);
      }
    } finally {
      threads.shutdownNow();
      fixtures.forEach(AttentionFixture::close);
    }
  }

  @Test
  void sameSizedBatchesAllocateNoMoreMemoryAfterTheFirstRound() {
    try (AttentionFixture f = new AttentionFixture(allocator, shape(8, 2, 128, DType.BF16), new int[] {500, 800},
        List.of(SliceSpec.causalBottomRight(0, 500, 500), SliceSpec.causalBottomRight(1, 800, 800)), SEED)) {
      for (int i = 0; i < backend.options().pipelineDepth(); i++) {
        backend.forward(f.forwardBatch());
      }
      int warm = backend.arenaAllocations();
      for (int i = 0; i < 10; i++) {
        CudaBackend.await(backend.submitForward(f.forwardBatch()));
      }
      assertEquals(warm, backend.arenaAllocations(), "no device or pinned allocation per request once warm");
    }
  }

  @Test
  void unsupportedAndMalformedBatchesFailByNameAndLeaveTheBackendWorking() {
    try (AttentionFixture fp32 = new AttentionFixture(allocator, shape(2, 2, 64, DType.FP32), new int[] {10},
            List.of(SliceSpec.full(0, 0, 10, 4)), SEED);
        AttentionFixture d96 = new AttentionFixture(allocator, shape(2, 2, 96, DType.BF16), new int[] {10},
            List.of(SliceSpec.full(0, 0, 10, 4)), SEED);
        AttentionFixture good = new AttentionFixture(allocator, shape(2, 2, 64, DType.BF16), new int[] {10},
            List.of(SliceSpec.full(0, 0, 10, 4)), SEED)) {
      UnsupportedShapeException e = assertThrows(UnsupportedShapeException.class, () -> backend.forward(fp32.forwardBatch()));
      assertTrue(e.getMessage().contains("fp32"), e.getMessage());
      if (!backend.supports(d96.shape)) {
        assertThrows(UnsupportedShapeException.class, () -> backend.forward(d96.forwardBatch()));
      }
      AttentionBatch batch = good.forwardBatch();
      QuerySlice s = batch.slices().get(0);
      AttentionBatch outside = new AttentionBatch(batch.shape(), batch.segments(),
          List.of(QuerySlice.forward(0, 5, 10, false, 0, s.q(), s.o(), s.lse())));
      IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> backend.forward(outside));
      assertTrue(bad.getMessage().contains("outside segment"), bad.getMessage());
      backend.forward(batch);
      for (long i = 0; i < good.o.get(0).numel(); i++) {
        assertTrue(Float.isFinite(good.o.get(0).getFloat(i)), "still computes after bad batches");
      }
    }
  }

  /** The inverse of {@link #concat}: writes {@code values} back into the tensors, in order. */
  private static void restore(List<Tensor> tensors, float[] values) {
    int at = 0;
    for (Tensor t : tensors) {
      for (long i = 0; i < t.numel(); i++) {
        t.setFloat(i, values[at++]);
      }
    }
  }

  /** A fixture's outputs after a forward and then a backward on one backend. */
  private record Outputs(float[] o, float[] lse, float[] dq, float[] dk, float[] dv) {
    static Outputs run(CudaBackend b, AttentionFixture f) {
      b.forward(f.forwardBatch());
      b.backward(f.backwardBatch());
      return new Outputs(concat(f.o), values(f.lse), concat(f.dq), concat(f.dk), concat(f.dv));
    }

    /** O, LSE, dK and dV bit for bit (dQ's reduce-adds land in another order on every run). */
    void assertBitIdentical(Outputs expected, String what) {
      assertArrayEquals(expected.o, o, what + " O");
      assertArrayEquals(expected.lse, lse, what + " LSE");
      assertArrayEquals(expected.dk, dk, what + " dK");
      assertArrayEquals(expected.dv, dv, what + " dV");
    }
  }

  private static float[] concat(List<Tensor> tensors) {
    long n = 0;
    for (Tensor t : tensors) {
      n += t.numel();
    }
    float[] out = new float[(int) n];
    int at = 0;
    for (Tensor t : tensors) {
      for (long i = 0; i < t.numel(); i++) {
        out[at++] = t.getFloat(i);
      }
    }
    return out;
  }

  private static float[] values(Tensor t) {
    return concat(List.of(t));
  }
}
