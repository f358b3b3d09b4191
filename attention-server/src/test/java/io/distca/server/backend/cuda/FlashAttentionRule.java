package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.List;

/**
 * FlashAttention's correctness rule (its tests' {@code (out - out_ref).abs().max() <= 2 *
 * (out_pt - out_ref).abs().max() + atol}): against the float64 reference {@code ref}, the kernel's
 * largest error may be at most twice the largest error of a plain low-precision implementation
 * ({@link LowPrecisionAttention}) plus {@code atol = 2 * max |(ref + 0.3) - 0.3 - ref|} evaluated in
 * the output dtype, i.e. two roundings at the outputs' magnitude. Unwritten (NaN-poisoned) elements
 * fail outright.
 */
final class FlashAttentionRule {
  private FlashAttentionRule() {}

  /** Returns {ours, baseline, atol} for reporting. */
  static double[] assertWithin(String what, List<double[]> ref, List<double[]> baseline, List<Tensor> actual) {
    double ours = 0;
    double base = 0;
    double atol = 0;
    for (int t = 0; t < ref.size(); t++) {
      double[] r = ref.get(t);
      double[] p = baseline.get(t);
      Tensor a = actual.get(t);
      DType dtype = a.dtype();
      if (a.numel() != r.length) {
        fail(what + " " + t + ": " + a.numel() + " elements, reference has " + r.length);
      }
      for (int i = 0; i < r.length; i++) {
        double value = a.getFloat(i);
        if (!Double.isFinite(value)) {
          fail(what + " " + t + " element " + i + " is " + value + " (unwritten or overflowed), reference " + r[i]);
        }
        ours = Math.max(ours, Math.abs(value - r[i]));
        base = Math.max(base, Math.abs(p[i] - r[i]));
        double rd = LowPrecisionAttention.round(r[i], dtype);
        double shifted = LowPrecisionAttention.round(LowPrecisionAttention.round(rd + 0.3, dtype) - 0.3, dtype);
        atol = Math.max(atol, 2 * Math.abs(shifted - rd));
      }
    }
    double bound = 2 * base + atol;
    assertTrue(ours <= bound, String.format("%s: max error %.3g exceeds 2 x low-precision error %.3g + atol %.3g",
        what, ours, base, atol));
    return new double[] {ours, base, atol};
  }

  /** LSE: -inf exactly where the reference has -inf (rows that see no key), else the rule with atol 1e-4. */
  static void assertLseWithin(String what, List<double[]> ref, List<double[]> baseline, List<double[]> actual) {
    double ours = 0;
    double base = 0;
    for (int t = 0; t < ref.size(); t++) {
      double[] r = ref.get(t);
      double[] a = actual.get(t);
      for (int i = 0; i < r.length; i++) {
        if (r[i] == Double.NEGATIVE_INFINITY || a[i] == Double.NEGATIVE_INFINITY) {
          if (r[i] != a[i]) {
            fail(what + " " + t + " lse " + i + " is " + a[i] + ", reference " + r[i]);
          }
          continue;
        }
        if (!Double.isFinite(a[i])) {
          fail(what + " " + t + " lse " + i + " is " + a[i] + " (unwritten?)");
        }
        ours = Math.max(ours, Math.abs(a[i] - r[i]));
        base = Math.max(base, Math.abs(baseline.get(t)[i] - r[i]));
      }
    }
    double bound = 2 * base + 1e-4;
    assertTrue(ours <= bound, String.format("%s lse: max error %.3g exceeds 2 x %.3g + 1e-4", what, ours, base));
  }
}
