package io.distca.protocol.tensor;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Merges partial attention results of one query range whose keys were split into parts (DESIGN
 * section 3, partial KV). Part i computed softmax attention over its own keys only, giving
 * {@code (O_i, lse_i)}; over the union of the keys
 *
 * <pre>
 *   M   = max_i lse_i
 *   lse = M + ln(sum_i exp(lse_i - M))
 *   O   = sum_i exp(lse_i - lse) * O_i
 * </pre>
 *
 * A part whose row saw no key has {@code lse_i = -inf} and weight 0; when every part has
 * {@code -inf} the merged row is {@code O = 0, lse = -inf}, exactly what attention over no key gives.
 * Arithmetic is float64; results are narrowed once, into the output dtype.
 */
public final class LseMerge {
  private LseMerge() {}

  /**
   * A partial (or merged) result: {@code o} [rows, heads, head_dim] of any float dtype; its LSE lives
   * in the fp32 tensor {@code lse} [heads, columns] at element {@code h * columns + lseColumn + row},
   * the request-level layout where one query range is a column window.
   */
  public record Part(Tensor o, Tensor lse, int lseColumn) {
    public Part {
      Objects.requireNonNull(o, "o");
      Objects.requireNonNull(lse, "lse");
    }

    /** A part whose LSE tensor is exactly [heads, rows]. */
    public static Part of(Tensor o, Tensor lse) {
      return new Part(o, lse, 0);
    }

    public int rows() {
      return o.dim(0);
    }

    long lseIndex(int head, int row) {
      return (long) head * lse.dim(1) + lseColumn + row;
    }
  }

  /**
   * Writes the merge of {@code parts} into {@code into}. {@code into} may be one of the parts (the
   * very same tensors and column: an in-place merge), but must not partially overlap any part.
   *
   * @throws IllegalArgumentException naming the part and the problem for mismatched shapes or dtypes,
   *     LSE windows outside their tensor, or an LSE that is NaN or +inf (no part ever produces one)
   */
  public static void merge(List<Part> parts, Part into) {
    Objects.requireNonNull(parts, "parts");
    Objects.requireNonNull(into, "into");
    if (parts.isEmpty()) {
      throw new IllegalArgumentException("merge needs at least one part");
    }
    int[] shape = into.o().shape();
    if (into.o().rank() != 3) {
      throw new IllegalArgumentException("merged O must be [rows, heads, head_dim], got " + into.o());
    }
    requireLayout(into, shape, "merged output");
    for (int i = 0; i < parts.size(); i++) {
      requireLayout(Objects.requireNonNull(parts.get(i), "part " + i), shape, "part " + i);
    }
    int rows = shape[0];
    int heads = shape[1];
    int headDim = shape[2];
    int n = parts.size();
    requireFiniteOrMinusInfinity(parts, rows, heads);

    double[] lse = new double[n];
    double[] weight = new double[n];
    for (int row = 0; row < rows; row++) {
      for (int h = 0; h < heads; h++) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
          Part p = parts.get(i);
          lse[i] = p.lse().getFloat(p.lseIndex(h, row));
          max = Math.max(max, lse[i]);
        }
        long oAt = ((long) row * heads + h) * headDim;
        if (max == Double.NEGATIVE_INFINITY) {
          for (int e = 0; e < headDim; e++) {
            into.o().setFloat(oAt + e, 0f);
          }
          into.lse().setFloat(into.lseIndex(h, row), Float.NEGATIVE_INFINITY);
          continue;
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
          sum += Math.exp(lse[i] - max);
        }
        double merged = max + Math.log(sum);
        for (int i = 0; i < n; i++) {
          weight[i] = Math.exp(lse[i] - merged);
        }
        // every part is read at e before e is written, which is what makes an in-place merge safe
        for (int e = 0; e < headDim; e++) {
          double value = 0;
          for (int i = 0; i < n; i++) {
            if (weight[i] != 0) {
              value += weight[i] * parts.get(i).o().getFloat(oAt + e);
            }
          }
          into.o().setFloat(oAt + e, (float) value);
        }
        into.lse().setFloat(into.lseIndex(h, row), (float) merged);
      }
    }
  }

  /** The merged log-sum-exp of scalar parts; -inf when every part is -inf. */
  public static double mergedLse(double... lse) {
    double max = Double.NEGATIVE_INFINITY;
    for (double l : lse) {
      max = Math.max(max, l);
    }
    if (max == Double.NEGATIVE_INFINITY) {
      return max;
    }
    double sum = 0;
    for (double l : lse) {
      sum += Math.exp(l - max);
    }
    return max + Math.log(sum);
  }

  private static void requireLayout(Part p, int[] shape, String what) {
    if (!Arrays.equals(p.o().shape(), shape)) {
      throw new IllegalArgumentException(
          what + " O has shape " + Arrays.toString(p.o().shape()) + ", expected " + Arrays.toString(shape));
    }
    if (!p.o().dtype().isFloating()) {
      throw new IllegalArgumentException(what + " O must be a float tensor, got " + p.o().dtype());
    }
    Tensor lse = p.lse();
    if (lse.dtype() != DType.FP32 || lse.rank() != 2 || lse.dim(0) != shape[1]) {
      throw new IllegalArgumentException(what + " LSE must be fp32 [" + shape[1] + ", columns], got " + lse);
    }
    if (p.lseColumn() < 0 || (long) p.lseColumn() + shape[0] > lse.dim(1)) {
      throw new IllegalArgumentException(what + " LSE columns [" + p.lseColumn() + ", "
          + ((long) p.lseColumn() + shape[0]) + ") are outside " + lse);
    }
  }

  private static void requireFiniteOrMinusInfinity(List<Part> parts, int rows, int heads) {
    for (int i = 0; i < parts.size(); i++) {
      Part p = parts.get(i);
      for (int h = 0; h < heads; h++) {
        for (int row = 0; row < rows; row++) {
          float l = p.lse().getFloat(p.lseIndex(h, row));
          if (Float.isNaN(l) || l == Float.POSITIVE_INFINITY) {
            throw new IllegalArgumentException(
                "part " + i + " has LSE " + l + " at head " + h + ", row " + row + " (must be finite or -inf)");
          }
        }
      }
    }
  }
}
