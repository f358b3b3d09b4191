package io.distca.dispatcher.plan;

/**
 * First phase of {@link DistcaPlanner}: places one document, whole when the chosen server stays
 * within its tolerance, else a piece that fills the server to its target, repeating on the next
 * server with what is left. PREFIX cuts take the document's tail first, so the piece left for last
 * is a head: the cheapest K/V prefix of all. HEAD_TAIL cuts take rows from both ends. Every piece
 * split off has at least {@code minShard} query rows, and every cut falls on the placement's cut
 * grid (a multiple of {@code PlanOptions.cutAlignTokens} in the document).
 */
final class DocumentFiller {
  private final Placement placement;
  private final boolean headTail;
  private final int minShard;
  private int doc;
  /** Query rows of the current document not placed yet: [a, b). */
  private int a;
  private int b;

  DocumentFiller(Placement placement, SplitStyle style) {
    this.placement = placement;
    this.headTail = style == SplitStyle.HEAD_TAIL && placement.causal;
    this.minShard = placement.minShard;
  }

  void start(int document) {
    doc = document;
    a = 0;
    b = placement.docs.length[document];
  }

  boolean done() {
    return a >= b;
  }

  /**
   * Places the rest of the document, or one piece of it, on {@code server}.
   *
   * @param leastLoaded whether no server has a lower relative load: only then may a range too short
   *     to split (or a server already at its target, which only rounding leaves as the least
   *     loaded) go over the cap, since no other server would do better
   * @return false when the server cannot take even a minimum piece within its cap and byte budget
   */
  boolean placeOn(int server, boolean leastLoaded) {
    Placement p = placement;
    long remaining = p.pairs(doc, a, b);
    double free = p.cap[server] - p.load[server];
    double room = p.target[server] - p.load[server];
    boolean splittable = b - a >= 2 * minShard;
    int held = p.kvHeld(doc, server, -1);
    double pairBudget = room;
    boolean forced = leastLoaded && (!splittable || room <= 0);
    if (!forced && remaining > free && (!splittable || room <= 0)) {
      return false;
    }
    if (remaining <= free || forced) {
      if (placeWhole(server, held)) {
        return true;
      }
      if (!splittable) {
        return false;
      }
      pairBudget = remaining; // it would fit by FLOPs: only the byte budget limits the piece
    }
    long kvCost = Math.max(0, p.kvEnd(doc, b) - held) * p.kvTokenBytes;
    long bytesLeft = p.bytesLeft(server);
    long maxRows = bytesLeft == Long.MAX_VALUE ? Integer.MAX_VALUE : Math.max(0, bytesLeft - kvCost) / p.rowBytes;
    return headTail ? placeHeadAndTail(server, pairBudget, maxRows, held) : placeTail(server, pairBudget, maxRows, held);
  }

  private boolean placeTail(int server, double pairBudget, long maxRows, int held) {
    Placement p = placement;
    // the largest tail that fits, its start rounded up onto the cut grid (a smaller tail still fits)
    int c = p.cutUp(QueryCuts.tailCut(a, b, p.docs.length[doc], p.causal, pairBudget), b);
    c = Math.min(c, p.cutDown(b - minShard, a));
    if (b - c > maxRows) {
      c = p.cutUp((int) (b - maxRows), b);
    }
    if (b - c < minShard) {
      return false;
    }
    if (c - a < minShard) {
      // The head left over would be too short to stand alone: take everything when the bytes allow
      // (it overshoots the target by at most minShard rows' pairs), else leave a minimum head.
      if (placeWhole(server, held)) {
        return true;
      }
      c = p.cutUp(a + minShard, b);
      if (b - c < minShard || b - c > maxRows) {
        return false;
      }
    }
    p.addPiece(doc, c, b, server);
    b = c;
    return true;
  }

  private boolean placeHeadAndTail(int server, double pairBudget, long maxRows, int held) {
    Placement p = placement;
    int h = Math.max(QueryCuts.headTailRows(a, b, pairBudget), minShard);
    h = (int) Math.min(h, maxRows / 2);
    int middle = b - a - 2 * h;
    if (middle > 0 && middle < minShard) {
      h = (b - a - minShard) / 2; // keep a middle long enough to be a shard of its own
    }
    if (h < minShard) {
      // too short to cut at both ends: the whole range or nothing
      return placeWhole(server, held);
    }
    // onto the cut grid: the head ends at or before a + h and the tail starts at or after b - h,
    // each rounded the other way when that would leave it shorter than minShard
    int headEnd = p.cutDown(a + h, a);
    if (headEnd - a < minShard) {
      headEnd = p.cutUp(a + h, b);
    }
    int tailStart = p.cutUp(b - h, b);
    if (b - tailStart < minShard) {
      tailStart = p.cutDown(b - h, headEnd);
    }
    int gap = tailStart - headEnd;
    if (headEnd - a < minShard || b - tailStart < minShard || gap < 0 || (gap > 0 && gap < minShard)
        || (long) (headEnd - a) + (b - tailStart) > maxRows) {
      return placeWhole(server, held);
    }
    p.addPiece(doc, a, headEnd, server);
    p.addPiece(doc, tailStart, b, server);
    a = headEnd;
    b = tailStart;
    return true;
  }

  /**
   * Places the whole rest of the document on {@code server} if it fits there within the cap and
   * the byte budget. With servers of different throughput the least relatively loaded one need not
   * have the most room: trying the roomiest before splitting keeps documents whole.
   */
  boolean placeWholeIfItFits(int server) {
    Placement p = placement;
    return p.pairs(doc, a, b) <= p.cap[server] - p.load[server] && placeWhole(server, p.kvHeld(doc, server, -1));
  }

  private boolean placeWhole(int server, int held) {
    Placement p = placement;
    if (!p.fitsBudget(server, p.addedBytes(doc, server, b - a, p.kvEnd(doc, b), held))) {
      return false;
    }
    p.addPiece(doc, a, b, server);
    a = b;
    return true;
  }
}
