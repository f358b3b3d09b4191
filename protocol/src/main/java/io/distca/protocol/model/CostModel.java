package io.distca.protocol.model;

/**
 * FLOPs and bytes of a CA-task (DESIGN section 3). A task is a query range of {@code q} tokens whose
 * keys are the first {@code kvLen} tokens of its document; with causal masking the query rows are
 * the last {@code q} positions of that prefix (bottom-right alignment).
 */
public final class CostModel {
  private CostModel() {}

  /** Query-key pairs that the mask lets through. */
  public static long pairs(long q, long kvLen, boolean causal) {
    if (q <= 0 || kvLen <= 0) {
      return 0;
    }
    if (!causal) {
      return q * kvLen;
    }
    if (q <= kvLen) {
      return q * (kvLen - q) + q * (q + 1) / 2;
    }
    // more queries than keys: the first q - kvLen rows see nothing
    return kvLen * (kvLen + 1) / 2;
  }

  public static double forwardFlops(long q, long kvLen, int headsQ, int headDim, boolean causal) {
    return 4.0 * headDim * headsQ * pairs(q, kvLen, causal);
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
