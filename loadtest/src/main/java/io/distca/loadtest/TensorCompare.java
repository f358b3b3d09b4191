package io.distca.loadtest;

import io.distca.protocol.tensor.Tensor;

/** Error measures between a result and its reference, ignoring entries that are -inf in both. */
public final class TensorCompare {
  private TensorCompare() {}

  /** max |a - b| / max(|ref|, 1e-6); infinite when shapes differ or one side has NaN. */
  public static double relativeMaxError(Tensor a, Tensor ref) {
    if (a.numel() != ref.numel()) {
      return Double.POSITIVE_INFINITY;
    }
    double maxDiff = 0;
    double maxRef = 0;
    for (long i = 0; i < a.numel(); i++) {
      double x = a.getFloat(i);
      double y = ref.getFloat(i);
      if (x == y) {
        if (Double.isFinite(y)) {
          maxRef = Math.max(maxRef, Math.abs(y));
        }
        continue; // equal, including -inf == -inf for rows that see no key
      }
      if (Double.isNaN(x) || Double.isNaN(y) || Double.isInfinite(x) || Double.isInfinite(y)) {
        return Double.POSITIVE_INFINITY;
      }
      maxDiff = Math.max(maxDiff, Math.abs(x - y));
      maxRef = Math.max(maxRef, Math.abs(y));
    }
    return maxDiff / Math.max(maxRef, 1e-6);
  }
}
