package io.distca.dispatcher.plan;

/**
 * Exact query-key pair counts of query ranges and the cut positions that move a given number of
 * pairs. A piece is query rows {@code [a, b)} of a document of {@code length} tokens with keys
 * {@code [0, b)} (causal) or {@code [0, length)} (full attention), which is how a varlen kernel
 * treats a bottom-right aligned shard. Forward FLOPs are {@code 4 * headDim * headsQ * pairs}, so
 * planning in pairs is planning in FLOPs.
 */
final class QueryCuts {
  private QueryCuts() {}

  /** Causal pairs of query rows {@code [0, x)} over their key prefix: {@code x (x + 1) / 2}. */
  static long prefixPairs(long x) {
    return x * (x + 1) / 2;
  }

  static long rangePairs(int a, int b, int length, boolean causal) {
    if (b <= a) {
      return 0;
    }
    return causal ? prefixPairs(b) - prefixPairs(a) : (long) (b - a) * length;
  }

  static long documentPairs(int length, boolean causal) {
    return rangePairs(0, length, length, causal);
  }

  /** Last key a piece ending at query row {@code b} needs (exclusive). */
  static int kvEnd(int b, int length, boolean causal) {
    return causal ? b : length;
  }

  /**
   * The smallest {@code c} in {@code [a, e]} whose tail {@code [c, e)} has at most {@code budget}
   * pairs: the largest tail that fits.
   */
  static int tailCut(int a, int e, int length, boolean causal, double budget) {
    if (budget >= rangePairs(a, e, length, causal)) {
      return a;
    }
    if (budget < 0) {
      return e;
    }
    long allowed = (long) budget;
    if (!causal) {
      long rows = allowed / length;
      return (int) Math.max(a, e - rows);
    }
    long needPrefix = prefixPairs(e) - allowed; // P(c) must reach this
    long c = Math.max(a, triangularRootFloor(needPrefix));
    while (c < e && prefixPairs(c) < needPrefix) {
      c++;
    }
    while (c > a && prefixPairs(c - 1) >= needPrefix) {
      c--;
    }
    return (int) c;
  }

  /** The largest {@code c} in {@code [a, e]} whose head {@code [a, c)} has at most {@code budget} pairs. */
  static int headCut(int a, int e, int length, boolean causal, double budget) {
    if (budget >= rangePairs(a, e, length, causal)) {
      return e;
    }
    if (budget < 0) {
      return a;
    }
    long allowed = (long) budget;
    if (!causal) {
      return (int) Math.min(e, a + allowed / length);
    }
    long limit = prefixPairs(a) + allowed; // P(c) must stay within this
    long c = Math.min(e, Math.max(a, triangularRootFloor(limit)));
    while (c < e && prefixPairs(c + 1) <= limit) {
      c++;
    }
    while (c > a && prefixPairs(c) > limit) {
      c--;
    }
    return (int) c;
  }

  /**
   * Rows {@code h} taken from each end of a causal range {@code [a, b)} so that head
   * {@code [a, a+h)} plus tail {@code [b-h, b)} hold at most {@code budget} pairs. Their pairs are
   * exactly {@code h * (a + b + 1)}, linear in h, which is what makes the symmetric cut exact.
   */
  static int headTailRows(int a, int b, double budget) {
    if (budget <= 0) {
      return 0;
    }
    long perRow = (long) a + b + 1;
    double rows = Math.floor(budget / perRow);
    return (int) Math.min((b - a) / 2, rows);
  }

  static long headTailPairs(int a, int b, int h) {
    return (long) h * ((long) a + b + 1);
  }

  /** The smallest multiple of {@code grid} at or above {@code c}, but at most {@code limit}. */
  static int alignUp(int c, int grid, int limit) {
    long up = ((long) c + grid - 1) / grid * grid;
    return (int) Math.min(up, limit);
  }

  /** The largest multiple of {@code grid} at or below {@code c} (c >= 0), but at least {@code floor}. */
  static int alignDown(int c, int grid, int floor) {
    return Math.max(c / grid * grid, floor);
  }

  /** floor of the x solving x (x + 1) / 2 = t, as a starting guess corrected by the callers. */
  private static long triangularRootFloor(long t) {
    if (t <= 0) {
      return 0;
    }
    return (long) Math.floor((Math.sqrt(8.0 * t + 1.0) - 1.0) / 2.0);
  }
}
