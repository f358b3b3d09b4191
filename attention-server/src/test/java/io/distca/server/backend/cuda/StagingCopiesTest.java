package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import java.util.List;
import java.util.Random;
import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.Test;

/**
 * Gather and scatter against element-by-element reads through the tensors' own accessors: every
 * fused row, every strided LSE entry and every descriptor int lands where distca_attn.h says.
 */
class StagingCopiesTest extends AllocatorPerTest {

  static final AttentionShape SHAPE = new AttentionShape(4, 2, 64, DType.BF16, 0.125f);
  static final int[] SEGMENTS = {50, 0, 93};
  static final List<SliceSpec> SPECS = List.of(
      SliceSpec.causalBottomRight(2, 40, 93), SliceSpec.full(0, 7, 30, 11), new SliceSpec(2, 0, 0, true, 0, 0),
      SliceSpec.causalBottomRight(0, 50, 50));

  @Test
  void backwardGatherPacksEveryInputAndDescriptor() {
    try (AttentionFixture f = new AttentionFixture(allocator, SHAPE, SEGMENTS, SPECS, 17)) {
      fillLse(f, new Random(5));
      fillO(f, new Random(9));
      AttentionBatch batch = f.backwardBatch(); // its delta from these O
      FusedBatchPlan plan = FusedBatchPlan.backward(batch, FusedBatchPlanTest.GEOMETRY);
      long base = MemoryUtil.allocateMemory(plan.layout.pinnedBytes());
      try (ParallelCopier copier = new ParallelCopier(3)) {
        CopyList copies = new CopyList();
        StagingCopies.gather(plan, batch, base, copies);
        copier.run(copies);
        StagingCopies.writeDescriptors(plan, base);
        FusedBatchPlan.Layout at = plan.layout;
        int hq = SHAPE.headsQ();
        int rowElements = hq * SHAPE.headDim();
        for (int s = 0; s < SPECS.size(); s++) {
          var slice = batch.slices().get(s);
          for (long e = 0; e < slice.q().numel(); e++) {
            long fused = (long) plan.sliceQStart[s] * rowElements + e;
            assertEquals(slice.q().getFloat(e), bf16At(base + at.q(), fused), "q of slice " + s);
            assertEquals(slice.dO().getFloat(e), bf16At(base + at.dout(), fused), "dO of slice " + s);
          }
          for (int h = 0; h < hq; h++) {
            for (int row = 0; row < slice.qLen(); row++) {
              float expected = slice.lse().lse().getFloat(slice.lse().index(h, row));
              long fused = (long) h * plan.totalQ + plan.sliceQStart[s] + row;
              float actual = Float.intBitsToFloat(MemoryUtil.getInt(base + at.lse() + 4L * fused));
              assertEquals(expected, actual, "lse of slice " + s + " head " + h + " row " + row);
              float delta = slice.delta().lse().getFloat(slice.delta().index(h, row));
              assertTrue(Float.isFinite(delta), "delta of finite O and dO");
              assertEquals(delta, Float.intBitsToFloat(MemoryUtil.getInt(base + at.dsum() + 4L * fused)),
                  "delta of slice " + s + " head " + h + " row " + row + " in dsum");
            }
          }
        }
        int keyElements = SHAPE.headsKv() * SHAPE.headDim();
        for (int g = 0; g < SEGMENTS.length; g++) {
          var segment = batch.segments().get(g);
          for (long e = 0; e < segment.k().numel(); e++) {
            long fused = (long) plan.segmentKStart[g] * keyElements + e;
            assertEquals(segment.k().getFloat(e), bf16At(base + at.k(), fused), "k of segment " + g);
            assertEquals(segment.v().getFloat(e), bf16At(base + at.v(), fused), "v of segment " + g);
          }
        }
        assertInts(plan.sliceDescriptors, base + at.slices());
        assertInts(plan.segmentDescriptors, base + at.segments());
        assertInts(plan.segmentSlices, base + at.segmentSlices());
        assertInts(plan.work, base + at.work());
      } finally {
        MemoryUtil.freeMemory(base);
      }
    }
  }

  @Test
  void forwardScatterWritesOutputAndStridedLseOfEverySliceAndNothingElse() {
    try (AttentionFixture f = new AttentionFixture(allocator, SHAPE, SEGMENTS, SPECS, 23)) {
      AttentionBatch batch = f.forwardBatch();
      FusedBatchPlan plan = FusedBatchPlan.forward(batch, FusedBatchPlanTest.GEOMETRY);
      long base = MemoryUtil.allocateMemory(plan.layout.pinnedBytes());
      try {
        FusedBatchPlan.Layout at = plan.layout;
        long oElements = (long) plan.totalQ * SHAPE.headsQ() * SHAPE.headDim();
        for (long e = 0; e < oElements; e++) {
          MemoryUtil.putShort(base + at.o() + 2 * e, HalfFloats.floatToBf16(e % 200 - 100));
        }
        for (long e = 0; e < (long) plan.totalQ * SHAPE.headsQ(); e++) {
          MemoryUtil.putInt(base + at.lse() + 4 * e, Float.floatToIntBits(e + 0.5f));
        }
        CopyList copies = new CopyList();
        StagingCopies.scatter(plan, batch, base, copies);
        new ParallelCopier(1).run(copies);
        int rowElements = SHAPE.headsQ() * SHAPE.headDim();
        for (int s = 0; s < SPECS.size(); s++) {
          var slice = batch.slices().get(s);
          for (long e = 0; e < slice.o().numel(); e++) {
            long fused = (long) plan.sliceQStart[s] * rowElements + e;
            assertEquals(fused % 200 - 100, slice.o().getFloat(e), "o of slice " + s);
          }
          for (int h = 0; h < SHAPE.headsQ(); h++) {
            for (int row = 0; row < slice.qLen(); row++) {
              float expected = (float) h * plan.totalQ + plan.sliceQStart[s] + row + 0.5f;
              assertEquals(expected, slice.lse().lse().getFloat(slice.lse().index(h, row)));
            }
          }
        }
        // bf16 holds integers up to 256 exactly, so the values above survive the round trip unchanged.
        // The fixture's LSE has lead and tail columns that belong to no slice: still NaN.
        Tensor lse = f.lse;
        for (int h = 0; h < SHAPE.headsQ(); h++) {
          assertEquals(Float.NaN, lse.getFloat((long) h * lse.dim(1)));
          assertEquals(Float.NaN, lse.getFloat((long) h * lse.dim(1) + lse.dim(1) - 1));
        }
      } finally {
        MemoryUtil.freeMemory(base);
      }
    }
  }

  /** Chunked upload and download rely on both lists running through the staging block in order. */
  @Test
  void gatherAndScatterWalkTheStagingBlockInIncreasingOrder() {
    try (AttentionFixture f = new AttentionFixture(allocator, SHAPE, SEGMENTS, SPECS, 29)) {
      for (FusedBatchPlan plan : List.of(FusedBatchPlan.forward(f.forwardBatch(), FusedBatchPlanTest.GEOMETRY),
          FusedBatchPlan.backward(f.backwardBatch(), FusedBatchPlanTest.GEOMETRY))) {
        AttentionBatch batch = plan.pass == FusedBatchPlan.Pass.FORWARD ? f.forwardBatch() : f.backwardBatch();
        long base = 1L << 40; // addresses are only compared, never touched
        for (boolean gather : new boolean[] {true, false}) {
          CopyList copies = new CopyList();
          if (gather) {
            StagingCopies.gather(plan, batch, base, copies);
          } else {
            StagingCopies.scatter(plan, batch, base, copies);
          }
          long[] last = {Long.MIN_VALUE};
          copies.copyRange(0, copies.totalBytes(), (source, destination, bytes) -> {
            long staging = gather ? destination : source;
            assertTrue(staging >= last[0], plan.pass + (gather ? " gather" : " scatter") + " goes backwards");
            last[0] = staging + bytes;
          });
          long end = gather ? plan.layout.inputBytes() : plan.layout.outputStart() + plan.layout.outputBytes();
          assertTrue(last[0] <= base + end, "stays inside its region");
        }
      }
    }
  }

  private static float bf16At(long address, long element) {
    return HalfFloats.bf16ToFloat(MemoryUtil.getShort(address + 2 * element));
  }

  private static void assertInts(int[] expected, long address) {
    for (int i = 0; i < expected.length; i++) {
      assertEquals(expected[i], MemoryUtil.getInt(address + 4L * i), "descriptor int " + i);
    }
  }

  private static void fillLse(AttentionFixture f, Random random) {
    for (long i = 0; i < f.lse.numel(); i++) {
      f.lse.setFloat(i, (float) random.nextGaussian());
    }
  }

  /** The backward's delta comes from O, which the fixture starts as NaN. */
  private static void fillO(AttentionFixture f, Random random) {
    for (var o : f.o) {
      for (long i = 0; i < o.numel(); i++) {
        o.setFloat(i, (float) random.nextGaussian());
      }
    }
  }
}
