package io.distca.server.backend;

import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;

/**
 * Comparison of a backend's output (narrowed to its dtype) with float64 reference values.
 *
 * <p>An element passes when {@code |actual - expected| <= rounding(dtype) * |expected| + floor *
 * maxAbs(expected)}: {@code rounding} is half an ulp of the output dtype relative to the value
 * (2^-8 bf16, 2^-11 fp16, 2^-24 fp32), the unavoidable error of writing the result; {@code floor}
 * covers fp32 accumulation, measured against the largest element so that values near zero (sums
 * that cancel) are not held to a relative bound they cannot meet.
 */
public final class Tolerance {
  private Tolerance() {}

  public static double rounding(DType dtype) {
    switch (dtype) {
      case BF16:
        return 0x1p-8;
      case FP16:
        return 0x1p-11;
      case FP32:
        return 0x1p-24;
      default:
        throw new IllegalArgumentException(dtype.toString());
    }
  }

  /** Returns the largest error seen, relative to maxAbs(expected), for reporting. */
  public static double assertClose(String what, double[] expected, Tensor actual, double floor) {
    return assertClose(what, expected, actual, floor, 0);
  }

  /**
   * As {@link #assertClose(String, double[], Tensor, double)}, the floor measured against at least
   * {@code magnitude}: for a tensor whose exact values may all cancel to zero (the dQ and dK of a slice
   * whose rows each see at most one key: dS = P (dP - delta) is exactly 0 in float64, while a
   * backend's dP and its client's delta round apart), the magnitude of the batch's gradients.
   */
  public static double assertClose(String what, double[] expected, Tensor actual, double floor, double magnitude) {
    if (expected.length != actual.numel()) {
      fail(what + ": " + expected.length + " expected values, tensor " + actual);
    }
    double maxAbs = magnitude;
    for (double e : expected) {
      maxAbs = Math.max(maxAbs, Math.abs(e));
    }
    double rounding = rounding(actual.dtype());
    double worst = 0;
    for (int i = 0; i < expected.length; i++) {
      double a = actual.getFloat(i);
      double err = Math.abs(a - expected[i]);
      double bound = rounding * Math.abs(expected[i]) + floor * maxAbs;
      if (!(err <= bound)) {
        fail(String.format("%s: element %d is %s, expected %s (error %.3g, bound %.3g, max |expected| %.3g)",
            what, i, a, expected[i], err, bound, maxAbs));
      }
      if (maxAbs > 0) {
        worst = Math.max(worst, err / maxAbs);
      }
    }
    return worst;
  }

  /** LSE: both -inf, or within {@code absolute * max(1, |expected|)}. */
  public static void assertLseClose(String what, double[] expected, double[] actual, double absolute) {
    for (int i = 0; i < expected.length; i++) {
      double e = expected[i];
      double a = actual[i];
      if (e == Double.NEGATIVE_INFINITY || a == Double.NEGATIVE_INFINITY) {
        if (e != a) {
          fail(what + ": lse element " + i + " is " + a + ", expected " + e);
        }
        continue;
      }
      if (!(Math.abs(a - e) <= absolute * Math.max(1, Math.abs(e)))) {
        fail(what + ": lse element " + i + " is " + a + ", expected " + e);
      }
    }
  }
}
