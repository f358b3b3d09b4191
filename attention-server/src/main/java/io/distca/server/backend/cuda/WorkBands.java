package io.distca.server.backend.cuda;

/**
 * The persistent kernels' work list in bands (distca_attn.h section 11). The kernels walk the
 * longest-first work list once per head (the backward's K/V heads) or pair of heads (the forward's
 * query heads, the chunked backward's K/V heads), so that a head's tiles run side by side and share
 * the L2; but the last heads' most expensive tiles are then claimed late, and where a few tiles are
 * far longer than the rest (a varlen batch whose longest document has several times the next one's
 * tokens) the launch waits for them. Cut into bands, the list is walked band by band, each band for
 * every head: the long tiles of every head start first.
 *
 * <p>{@link #bands} models the kernels' schedule (each CTA claims the next tile in order as it frees)
 * with and without the cuts of {@link #cuts} for each of {@link #FACTORS}, and keeps the best where
 * it ends at least {@link #MIN_GAIN} sooner. schedule_policy.py's {@code work_bands} is the same policy
 * (native/NOTES.md v73).
 */
final class WorkBands {
  private WorkBands() {}

  /** No bands: section 5's order. */
  static final int[] NONE = new int[0];
  /**
   * The candidate cuts: band k holds the items of cost in (longest / f^(k+1), longest / f^k], the
   * last band everything cheaper, for each factor f.
   */
  static final double[] FACTORS = {2.0, 1.5, 1.25};
  /**
   * Bands are kept only where the modelled schedule ends at least this fraction sooner: the model
   * sees no L2, and bands of uniform short sequences (16 of 1K tokens backward, 8 of 2K forward),
   * modelled 1.2-1.4% sooner, ran 6% slower on an H100 (NOTES v73).
   */
  static final double MIN_GAIN = 0.03;
  /** The schedule is modelled only where the longest tile is at least this fraction of a CTA's share. */
  static final double MIN_LONGEST = 0.01;
  /**
   * The backward takes bands only from this head dim: head_dim 64's backward, whose dQ reduce-adds
   * move twice d128's bytes per FLOP, lost up to 9% on an H100 where a band's short tiles come from
   * many documents (their rows read again in every band) and gained 0-5% on pretrain mixes (NOTES v73).
   */
  static final int BACKWARD_MIN_HEAD_DIM = 128;
  /** A forward tile change, in key blocks (NOTES v43: ~5,600 cycles beyond a tile's blocks, ~2,550 each). */
  static final long FORWARD_TILE_OVERHEAD_BLOCKS = 2;
  /**
   * common.cuh's head groups of the work order (section 5): the forward pairs its query heads, the
   * backward walks its K/V heads one at a time, the chunked backward (section 10) in pairs.
   */
  static final int FORWARD_HEAD_GROUP = 2;
  static final int BACKWARD_HEAD_GROUP = 1;
  static final int BACKWARD_CHUNKED_HEAD_GROUP = 2;

  /** The forward plan's bands on {@code ctas} persistent CTAs. */
  static int[] forward(FusedBatchPlan plan, int ctas) {
    long[] tiles = new long[plan.numWork];
    for (int i = 0; i < tiles.length; i++) {
      tiles[i] = plan.workCost[i] + FORWARD_TILE_OVERHEAD_BLOCKS;
    }
    return bands(tiles, plan.shape.headsQ(), FORWARD_HEAD_GROUP, ctas);
  }

  /**
   * The backward plan's bands on {@code ctas} persistent CTAs, for the chunked walk's head order or
   * the others'. A key tile walks its whole group (its cost is one head's rows), a group split's
   * piece its own heads (its cost counts them); a tile's end costs as many rows as
   * {@link FusedBatchPlan#SPLIT_OVERHEAD_STEPS} steps. None under {@link #BACKWARD_MIN_HEAD_DIM}, nor
   * for a plan whose group splits are in head order ({@link FusedBatchPlan#headOrderedSplits}).
   */
  static int[] backward(FusedBatchPlan plan, int ctas, int blockM, boolean chunked) {
    if (plan.shape.headDim() < BACKWARD_MIN_HEAD_DIM || plan.headOrderedSplits) {
      return NONE;  // (a list in head order is not longest first: FusedBatchPlan#l2OrderPieces)
    }
    int group = plan.shape.headsQ() / plan.shape.headsKv();
    long overhead = (long) FusedBatchPlan.SPLIT_OVERHEAD_STEPS * blockM;
    long[] tiles = new long[plan.numWork];
    for (int i = 0; i < tiles.length; i++) {
      tiles[i] = plan.workCost[i] * (plan.groupSplits ? 1 : group) + overhead;
    }
    return bands(tiles, plan.shape.headsKv(), chunked ? BACKWARD_CHUNKED_HEAD_GROUP : BACKWARD_HEAD_GROUP, ctas);
  }

  /**
   * Band ends for a longest-first work list whose tiles cost {@code tiles} (one head's, its change
   * included), walked for {@code heads} heads in groups of {@code headGroup} on {@code ctas} CTAs, or
   * {@link #NONE} where no candidate ends {@link #MIN_GAIN} sooner than section 5's order.
   */
  static int[] bands(long[] tiles, int heads, int headGroup, int ctas) {
    if (tiles.length < 2 || heads < 1 || ctas < 1) {
      return NONE;
    }
    double total = 0;
    long longest = 0;
    for (long c : tiles) {
      total += c;
      longest = Math.max(longest, c);
    }
    double share = total * heads / ctas;
    if (share <= 0 || longest < MIN_LONGEST * share) {
      return NONE;
    }
    double best = makespan(tiles, heads, headGroup, ctas, NONE) * (1 - MIN_GAIN);
    int[] bestEnds = NONE;
    for (double f : FACTORS) {
      int[] ends = cuts(tiles, f, DistcaAttnAbi.WORK_BANDS);
      if (ends.length > 0) {
        double t = makespan(tiles, heads, headGroup, ctas, ends);
        if (t < best) {
          best = t;
          bestEnds = ends;
        }
      }
    }
    return bestEnds;
  }

  /**
   * Band ends of a longest-first list: a new band wherever the cost falls to 1 / {@code factor} of
   * the previous band's bound, at most {@code most} ends.
   */
  static int[] cuts(long[] costs, double factor, int most) {
    if (costs.length == 0 || costs[0] <= 0) {
      return NONE;
    }
    int[] ends = new int[most];
    int n = 0;
    double bound = costs[0] / factor;
    for (int i = 1; i < costs.length && n < most; i++) {
      if (costs[i] > bound) {
        continue;
      }
      ends[n++] = i;
      while (costs[i] <= bound && bound > 0) {
        bound /= factor;
      }
    }
    return java.util.Arrays.copyOf(ends, n);
  }

  /**
   * When the last of {@code ctas} CTAs ends, each claiming the next tile in order as it frees: the
   * list cut at {@code ends}, each band walked once per group of {@code headGroup} heads (a group's
   * heads side by side) before the next band.
   */
  static double makespan(long[] tiles, int heads, int headGroup, int ctas, int[] ends) {
    long[] heap = new long[ctas]; // CTA loads, a binary min-heap
    int lo = 0;
    for (int b = 0; b <= ends.length; b++) {
      int hi = b < ends.length ? ends[b] : tiles.length;
      for (int h0 = 0; h0 < heads; h0 += headGroup) {
        int g = Math.min(headGroup, heads - h0);
        for (int i = lo; i < hi; i++) {
          for (int h = 0; h < g; h++) {
            heap[0] += tiles[i];
            siftDown(heap);
          }
        }
      }
      lo = hi;
    }
    long max = 0;
    for (long load : heap) {
      max = Math.max(max, load);
    }
    return max;
  }

  /** Restores the min-heap after its root grew. */
  private static void siftDown(long[] heap) {
    int n = heap.length;
    for (int i = 0;;) {
      int l = 2 * i + 1;
      int r = l + 1;
      int m = i;
      if (l < n && heap[l] < heap[m]) {
        m = l;
      }
      if (r < n && heap[r] < heap[m]) {
        m = r;
      }
      if (m == i) {
        return;
      }
      long t = heap[i];
      heap[i] = heap[m];
      heap[m] = t;
      i = m;
    }
  }
}
