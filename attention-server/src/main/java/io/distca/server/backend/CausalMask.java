package io.distca.server.backend;

/**
 * The per-slice mask of {@link QuerySlice} in index form, shared by every backend so that all of them
 * agree on which keys a row sees. Keys are numbered within the slice's key range {@code [0, kvLen)};
 * with causal masking row i sees key j iff {@code j <= i + diagonal}, so every row sees a prefix
 * {@code [0, keyEnd)} of the range.
 */
public final class CausalMask {
  private CausalMask() {}

  /** Exclusive end of the prefix of keys that query row {@code row} sees; 0 when it sees none. */
  public static int keyEnd(boolean causal, int diagonal, int kvLen, int row) {
    if (!causal) {
      return kvLen;
    }
    long end = (long) row + diagonal + 1;
    return (int) Math.max(0, Math.min(kvLen, end));
  }

  public static int keyEnd(QuerySlice slice, int row) {
    return keyEnd(slice.causal(), slice.diagonal(), slice.kvLen(), row);
  }

  /** The first query row that sees key {@code key}; {@code qLen} when no row does. */
  public static int firstRowSeeing(boolean causal, int diagonal, int qLen, int key) {
    if (!causal) {
      return 0;
    }
    long first = (long) key - diagonal;
    return (int) Math.max(0, Math.min(qLen, first));
  }
}
