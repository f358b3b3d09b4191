package io.distca.server.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import io.distca.server.backend.ReferenceAttention.DoubleBatch;
import io.distca.server.backend.ReferenceAttention.DoubleSegment;
import io.distca.server.backend.ReferenceAttention.DoubleSlice;
import io.distca.server.backend.ReferenceAttention.ForwardResult;
import io.distca.server.backend.ReferenceAttention.Gradients;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class ReferenceAttentionTest extends AllocatorPerTest {

  /**
   * The analytic backward must be the derivative of the forward: loss = sum over slices of O . G,
   * whose gradient is what backward returns for dO = G. Checked element by element against central
   * differences in float64, over a batch with GQA, two slices sharing a segment (one with a key
   * offset, one non-causal) and a negative diagonal (rows that see nothing).
   */
  @Test
  void backwardIsTheDerivativeOfForward() {
    long seed = 20241125L;
    Random random = new Random(seed);
    int hq = 4;
    int hkv = 2;
    int d = 8;
    List<DoubleSegment> segments = List.of(
        new DoubleSegment(7, gaussian(random, 7 * hkv * d), gaussian(random, 7 * hkv * d)),
        new DoubleSegment(4, gaussian(random, 4 * hkv * d), gaussian(random, 4 * hkv * d)));
    List<DoubleSlice> slices = List.of(
        new DoubleSlice(0, 0, 7, true, 2, 5, gaussian(random, 5 * hq * d)),
        new DoubleSlice(0, 2, 5, false, 0, 3, gaussian(random, 3 * hq * d)),
        new DoubleSlice(1, 0, 4, true, -2, 4, gaussian(random, 4 * hq * d)));
    DoubleBatch batch = new DoubleBatch(hq, hkv, d, 0.4, segments, slices);
    List<double[]> upstream = new ArrayList<>();
    for (DoubleSlice s : slices) {
      upstream.add(gaussian(random, s.qLen() * hq * d));
    }
    ForwardResult f = ReferenceAttention.forward(batch);
    Gradients g = ReferenceAttention.backward(batch, f.o(), f.lse(), upstream);

    int checked = 0;
    for (int i = 0; i < slices.size(); i++) {
      checked += checkAgainstDifferences("dq of slice " + i, slices.get(i).q(), g.dq().get(i), batch, upstream);
    }
    for (int i = 0; i < segments.size(); i++) {
      checked += checkAgainstDifferences("dk of segment " + i, segments.get(i).k(), g.dk().get(i), batch, upstream);
      checked += checkAgainstDifferences("dv of segment " + i, segments.get(i).v(), g.dv().get(i), batch, upstream);
    }
    assertTrue(checked > 500, "checked " + checked + " elements");
    // rows 0 and 1 of slice 2 see no key (diagonal -2): they have LSE -inf and no gradient
    for (int h = 0; h < hq; h++) {
      assertEquals(Double.NEGATIVE_INFINITY, f.lse().get(2)[h * 4]);
      assertEquals(Double.NEGATIVE_INFINITY, f.lse().get(2)[h * 4 + 1]);
    }
  }

  private static int checkAgainstDifferences(
      String what, double[] input, double[] analytic, DoubleBatch batch, List<double[]> upstream) {
    double eps = 1e-5;
    double maxAbs = 0;
    for (double a : analytic) {
      maxAbs = Math.max(maxAbs, Math.abs(a));
    }
    assertTrue(maxAbs > 0.01, what + " is (nearly) zero everywhere: the check would prove nothing");
    for (int e = 0; e < input.length; e++) {
      double saved = input[e];
      input[e] = saved + eps;
      double plus = loss(batch, upstream);
      input[e] = saved - eps;
      double minus = loss(batch, upstream);
      input[e] = saved;
      double numeric = (plus - minus) / (2 * eps);
      // central differences are exact to O(eps^2) ~ 1e-10 here; rounding adds ~1e-11
      assertEquals(numeric, analytic[e], 1e-7 + 1e-7 * Math.abs(numeric),
          what + " element " + e + " (seed 20241125)");
    }
    return input.length;
  }

  private static double loss(DoubleBatch batch, List<double[]> upstream) {
    ForwardResult f = ReferenceAttention.forward(batch);
    double sum = 0;
    for (int i = 0; i < upstream.size(); i++) {
      double[] o = f.o().get(i);
      double[] g = upstream.get(i);
      for (int e = 0; e < o.length; e++) {
        sum += o[e] * g[e];
      }
    }
    return sum;
  }

  private static double[] gaussian(Random random, int n) {
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      out[i] = random.nextGaussian();
    }
    return out;
  }

  /** Closed forms: one key gives O = v and LSE = score; equal scores give the mean of V and ln(n). */
  @Test
  void smallCasesHaveClosedForms() {
    AttentionShape shape = new AttentionShape(4, 2, 2, DType.FP32, 0.5f);
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {3},
        List.of(new SliceSpec(0, 0, 1, false, 0, 1), new SliceSpec(0, 0, 3, true, 1, 3)), 1)) {
      // slice 0: key 0 only. slice 1: q = 0, so row i sees i + 2 keys (capped at 3) with equal scores.
      setAll(fx.q.get(1), 0f);
      float[] k0 = {0.5f, -1f, 2f, 1f}; // [kv head 0: (0.5, -1)], [kv head 1: (2, 1)]
      for (int e = 0; e < 4; e++) {
        fx.k.get(0).setFloat(e, k0[e]);
      }
      try (ReferenceAttention ref = new ReferenceAttention()) {
        ref.forward(fx.forwardBatch());
      }
      int d = 2;
      for (int h = 0; h < 4; h++) {
        int kvHead = h / 2; // GQA: query heads 0, 1 read kv head 0; 2, 3 read kv head 1
        double score = 0;
        for (int e = 0; e < d; e++) {
          score += 0.5 * fx.q.get(0).getFloat(h * d + e) * k0[kvHead * d + e];
        }
        assertEquals(score, fx.lse.getFloat(fx.lseView(0).index(h, 0)), 1e-6);
        for (int e = 0; e < d; e++) {
          assertEquals(fx.v.get(0).getFloat(kvHead * d + e), fx.o.get(0).getFloat(h * d + e), 1e-6);
        }
        for (int row = 0; row < 3; row++) {
          int keys = Math.min(3, row + 2);
          assertEquals(Math.log(keys), fx.lse.getFloat(fx.lseView(1).index(h, row)), 1e-6);
          for (int e = 0; e < d; e++) {
            double mean = 0;
            for (int j = 0; j < keys; j++) {
              mean += fx.v.get(0).getFloat((j * 2 + kvHead) * d + e) / keys;
            }
            assertEquals(mean, fx.o.get(1).getFloat((row * 4 + h) * d + e), 1e-6);
          }
        }
      }
    }
  }

  @Test
  void rowsThatSeeNoKeyGetZeroOutputAndMinusInfinity() {
    AttentionShape shape = new AttentionShape(2, 1, 4, DType.BF16, 0.5f);
    // diagonal -2: rows 0, 1 see nothing; kvLen 0: no row sees anything
    List<SliceSpec> specs = List.of(new SliceSpec(0, 0, 5, true, -2, 4), new SliceSpec(0, 5, 0, false, 0, 2));
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {5}, specs, 2);
        ReferenceAttention ref = new ReferenceAttention()) {
      ref.forward(fx.forwardBatch());
      for (int h = 0; h < 2; h++) {
        for (int[] sliceRow : new int[][] {{0, 0}, {0, 1}, {1, 0}, {1, 1}}) {
          assertEquals(Float.NEGATIVE_INFINITY, fx.lse.getFloat(fx.lseView(sliceRow[0]).index(h, sliceRow[1])));
          for (int e = 0; e < 4; e++) {
            assertEquals(0f, fx.o.get(sliceRow[0]).getFloat((sliceRow[1] * 2 + h) * 4 + e));
          }
        }
        assertTrue(Float.isFinite(fx.lse.getFloat(fx.lseView(0).index(h, 2))));
      }
      fx.poisonGradients();
      ref.backward(fx.backwardBatch());
      for (int e = 0; e < 2 * 2 * 4; e++) {
        assertEquals(0f, fx.dq.get(0).getFloat(e), "dq of a row that sees nothing");
        assertEquals(0f, fx.dq.get(1).getFloat(e), "dq of a slice with no keys");
      }
      // keys 3 and 4 are seen by no row (row 3 sees keys <= 1): their gradient is zero
      for (int e = 3 * 4; e < 5 * 4; e++) {
        assertEquals(0f, fx.dk.get(0).getFloat(e));
        assertEquals(0f, fx.dv.get(0).getFloat(e));
      }
    }
  }

  /** The tensor entry points write exactly what the float64 ones compute, narrowed to the dtype. */
  @Test
  void tensorEntryPointsNarrowTheFloat64Results() {
    AttentionShape shape = new AttentionShape(4, 2, 16, DType.BF16, 0.25f);
    List<SliceSpec> specs = List.of(SliceSpec.causalBottomRight(0, 9, 20), SliceSpec.full(0, 3, 10, 4));
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {20}, specs, 3);
        ReferenceAttention ref = new ReferenceAttention()) {
      ref.forward(fx.forwardBatch());
      ForwardResult f = fx.referenceForward();
      for (int i = 0; i < specs.size(); i++) {
        Tolerance.assertClose("o of slice " + i, f.o().get(i), fx.o.get(i), 1e-7);
        Tolerance.assertLseClose("lse of slice " + i, f.lse().get(i), fx.lseOf(i), 1e-7);
      }
      ref.backward(fx.backwardBatch());
      Gradients g = fx.referenceGradients();
      for (int i = 0; i < specs.size(); i++) {
        Tolerance.assertClose("dq of slice " + i, g.dq().get(i), fx.dq.get(i), 1e-7);
      }
      Tolerance.assertClose("dk", g.dk().get(0), fx.dk.get(0), 1e-7);
      Tolerance.assertClose("dv", g.dv().get(0), fx.dv.get(0), 1e-7);
    }
  }

  @Test
  void malformedBatchesAreRejectedWithTheProblemNamed() {
    AttentionShape shape = new AttentionShape(2, 1, 4, DType.FP16, 0.5f);
    try (AttentionFixture fx = new AttentionFixture(allocator, shape, new int[] {5},
        List.of(new SliceSpec(0, 2, 4, false, 0, 3)), 4);
        ReferenceAttention ref = new ReferenceAttention()) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ref.forward(fx.forwardBatch()));
      assertTrue(e.getMessage().contains("key range [2, 6)"), e.getMessage());
      AttentionBatch forwardOnly = fx.forwardBatch();
      e = assertThrows(IllegalArgumentException.class, () -> ref.backward(forwardOnly));
      assertTrue(e.getMessage().contains("dk is missing"), e.getMessage());
      AttentionBatch wrongHeadDim = new AttentionBatch(new AttentionShape(2, 1, 8, DType.FP16, 0.5f),
          forwardOnly.segments(), forwardOnly.slices());
      e = assertThrows(IllegalArgumentException.class, () -> ref.forward(wrongHeadDim));
      assertTrue(e.getMessage().contains("segment 0 k must have shape [5, 1, 8], got [5, 1, 4]"), e.getMessage());
      QuerySlice s = forwardOnly.slices().get(0);
      AttentionBatch lseOutside = new AttentionBatch(shape, forwardOnly.segments(), List.of(QuerySlice.forward(
          0, 0, 5, true, 2, s.q(), s.o(), new LseView(fx.lse, fx.lse.dim(1) - 2))));
      e = assertThrows(IllegalArgumentException.class, () -> ref.forward(lseOutside));
      assertTrue(e.getMessage().contains("slice 0 lse columns"), e.getMessage());
    }
  }

  private static void setAll(Tensor t, float value) {
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, value);
    }
  }
}
