package io.distca.protocol.tensor;

import java.util.Arrays;
import java.util.stream.IntStream;
import org.apache.arrow.memory.BufferAllocator;

/**
 * The backward's row statistic {@code delta = rowsum(dO * O)} (FlashAttention's "D"): for query row
 * r and head h, the sum over head_dim of {@code dO[r][h][:] * O[r][h][:]}, with O the forward output
 * as rounded to its dtype, accumulated in double and stored as fp32 in the LSE layout
 * [heads, rows]. O enters the backward only through it, so a backward request carries delta (4 bytes
 * per row and head) instead of O (2 * head_dim bytes at bf16), and the server skips the pass over
 * O and dO that would compute it (docs/protocol.md, "Backward").
 */
public final class AttentionDelta {
  private AttentionDelta() {}

  /** Delta of {@code o} and {@code dO} ([rows, heads, head_dim], same shape) as a new [heads, rows] tensor. */
  public static Tensor of(BufferAllocator allocator, Tensor o, Tensor dO) {
    requireSameRows(o, dO);
    Tensor delta = Tensor.allocateUninitialized(allocator, DType.FP32, o.dim(1), o.dim(0));
    try {
      computeInto(o, dO, delta, 0);
    } catch (RuntimeException e) {
      delta.close();
      throw e;
    }
    return delta;
  }

  /**
   * Writes the delta of {@code o} and {@code dO} ([rows, heads, head_dim]) into columns
   * {@code [column, column + rows)} of {@code into} (fp32 [heads, columns]).
   */
  public static void computeInto(Tensor o, Tensor dO, Tensor into, int column) {
    requireSameRows(o, dO);
    int rows = o.dim(0);
    int heads = o.dim(1);
    int d = o.dim(2);
    if (into.dtype() != DType.FP32 || into.rank() != 2 || into.dim(0) != heads || column < 0
        || (long) column + rows > into.dim(1)) {
      throw new IllegalArgumentException("delta of " + rows + " rows and " + heads + " heads cannot go to column "
          + column + " of " + into);
    }
    int columns = into.dim(1);
    IntStream.range(0, heads).parallel().forEach(h -> {
      for (int r = 0; r < rows; r++) {
        long at = ((long) r * heads + h) * d;
        double sum = 0;
        for (int e = 0; e < d; e++) {
          sum += (double) o.getFloat(at + e) * dO.getFloat(at + e);
        }
        into.setFloat((long) h * columns + column + r, (float) sum);
      }
    });
  }

  private static void requireSameRows(Tensor o, Tensor dO) {
    if (o.rank() != 3 || !Arrays.equals(o.shape(), dO.shape())) {
      throw new IllegalArgumentException("delta needs O and dO of one [rows, heads, head_dim] shape, got " + o
          + " and " + dO);
    }
  }
}
