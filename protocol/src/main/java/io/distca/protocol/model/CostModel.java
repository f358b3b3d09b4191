package io.distca.protocol.model;

/**
 * FLOPs and bytes of a CA-task (DESIGN section 3).
 *
 * <p>Masking is expressed by a <em>diagonal</em>: with causal masking query row {@code i} of a task
 * sees key {@code j} of the task's key range iff {@code j <= i + diagonal}. The usual varlen case,
 * a query shard {@code [qs, qe)} of a document over its key prefix {@code [0, kvLen)} with
 * {@code kvLen >= qe}, is bottom-right aligned: {@code diagonal = kvLen - qLen}. In general
 * {@code diagonal} is the document position of the first query row minus that of the first key.
 */
public final class CostModel {
  private CostModel() {}

  public static int bottomRightDiagonal(int qLen, int kvLen) {
    return kvLen - qLen;
  }

  /** Query-key pairs that a bottom-right aligned mask (or no mask) lets through. */
  public static long pairs(long q, long kvLen, boolean causal) {
    return pairs(q, kvLen, causal, kvLen - q);
  }

  /** Query-key pairs that the mask lets through: sum over rows of clamp(i + diagonal + 1, 0, kvLen). */
  public static long pairs(long q, long kvLen, boolean causal, long diagonal) {
    if (q <= 0 || kvLen <= 0) {
      return 0;
    }
    if (!causal) {
      return q * kvLen;
    }
    // rows i in [0, q): visible = clamp(i + diagonal + 1, 0, kvLen)
    long firstPartial = Math.max(0, -diagonal - 1 + 1); // first row with >= 1 visible key: i >= -diagonal
    long firstFull = Math.max(0, kvLen - 1 - diagonal); // first row that sees all keys
    long total = 0;
    long a = Math.min(q, firstPartial);
    long b = Math.min(q, Math.max(a, firstFull));
    if (b > a) {
      // rows a..b-1 see i + diagonal + 1 keys: arithmetic series
      long first = a + diagonal + 1;
      long last = (b - 1) + diagonal + 1;
      total += (first + last) * (b - a) / 2;
    }
    if (q > b) {
      total += (q - b) * kvLen;
    }
    return total;
  }

  public static double forwardFlops(long q, long kvLen, int headsQ, int headDim, boolean causal) {
    return 4.0 * headDim * headsQ * pairs(q, kvLen, causal);
  }

  public static double forwardFlops(long q, long kvLen, int headsQ, int headDim, boolean causal, long diagonal) {
    return 4.0 * headDim * headsQ * pairs(q, kvLen, causal, diagonal);
  }

  public static double backwardFlops(long q, long kvLen, int headsQ, int headDim, boolean causal) {
    return 2.5 * forwardFlops(q, kvLen, headsQ, headDim, causal);
  }

  public static long forwardBytesIn(long q, long kvLen, AttentionShape s) {
    return (long) s.dtype().byteSize() * s.headDim() * (q * s.headsQ() + 2 * kvLen * s.headsKv());
  }

  public static long forwardBytesOut(long q, AttentionShape s) {
    return (long) s.dtype().byteSize() * s.headDim() * q * s.headsQ() + 4L * q * s.headsQ();
  }

  /** Causal FLOPs of a query range [qs, qe) of a document, with its keys being the prefix [0, qe). */
  public static double causalRangeFlops(long qs, long qe, int headsQ, int headDim) {
    return forwardFlops(qe - qs, qe, headsQ, headDim, true);
  }
}
