package io.distca.dispatcher.plan;

import java.util.Arrays;

/**
 * Second phase of {@link DistcaPlanner}: the paper's donor/receiver loop over a finished placement.
 * While the most loaded server is above its cap {@code (1 + eps) * target} (capping donors, which
 * the paper does not) or the least loaded is below {@code (1 - eps) * target} (the paper's
 * receivers), it moves {@code min(piece, surplus, deficit)} pairs from the former to the latter,
 * choosing among the donor's pieces and cut options the move with the fewest extra K/V bytes per
 * pair moved. K/V of the document already on the receiver is free, and K/V the donor no longer
 * needs is a saving, so moves that re-join a split document rank first.
 */
final class Rebalancer {
  private static final double RELATIVE_SLACK = 1e-9;

  private final Placement placement;
  private final boolean headTail;
  private int[][] piecesOf;
  private int[] pieceCountOf;

  /** The best move found so far for the current donor/receiver pair. */
  private int bestPiece;
  private int bestKeptFrom;
  private int bestKeptTo;
  private int bestMovedHeadTo;
  private int bestMovedTailFrom;
  private long bestMoved;
  private long bestCost;

  Rebalancer(Placement placement, SplitStyle style) {
    this.placement = placement;
    this.headTail = style == SplitStyle.HEAD_TAIL && placement.causal;
  }

  /** @return the number of moves made */
  int rebalance() {
    Placement p = placement;
    int servers = p.serverCount();
    indexPiecesByServer();
    int maxMoves = p.pieceCount + 4 * servers;
    int moves = 0;
    while (moves < maxMoves) {
      int donor = 0;
      int receiver = 0;
      for (int s = 1; s < servers; s++) {
        if (p.relativeLoad(s) > p.relativeLoad(donor)) {
          donor = s;
        }
        if (p.relativeLoad(s) < p.relativeLoad(receiver)) {
          receiver = s;
        }
      }
      boolean donorOverCap = p.load[donor] > p.cap[donor] * (1 + RELATIVE_SLACK);
      boolean receiverUnderFloor = p.load[receiver] < p.floor[receiver] * (1 - RELATIVE_SLACK);
      if (donor == receiver || !(donorOverCap || receiverUnderFloor)) {
        break;
      }
      double surplus = p.load[donor] - p.target[donor];
      double deficit = p.target[receiver] - p.load[receiver];
      if (surplus <= 0 || deficit <= 0 || !findBestMove(donor, receiver, Math.min(surplus, deficit))) {
        break;
      }
      applyBestMove(donor, receiver);
      moves++;
    }
    return moves;
  }

  private void indexPiecesByServer() {
    Placement p = placement;
    int servers = p.serverCount();
    pieceCountOf = new int[servers];
    for (int piece = 0; piece < p.pieceCount; piece++) {
      if (p.pieceServer[piece] >= 0) {
        pieceCountOf[p.pieceServer[piece]]++;
      }
    }
    piecesOf = new int[servers][];
    for (int s = 0; s < servers; s++) {
      piecesOf[s] = new int[Math.max(4, pieceCountOf[s])];
      pieceCountOf[s] = 0;
    }
    for (int piece = 0; piece < p.pieceCount; piece++) {
      if (p.pieceServer[piece] >= 0) {
        track(p.pieceServer[piece], piece);
      }
    }
  }

  private void track(int server, int piece) {
    if (pieceCountOf[server] == piecesOf[server].length) {
      piecesOf[server] = Arrays.copyOf(piecesOf[server], pieceCountOf[server] * 2);
    }
    piecesOf[server][pieceCountOf[server]++] = piece;
  }

  private boolean findBestMove(int donor, int receiver, double wanted) {
    Placement p = placement;
    bestPiece = -1;
    double donorRelative = p.relativeLoad(donor);
    for (int i = 0; i < pieceCountOf[donor]; i++) {
      int piece = piecesOf[donor][i];
      if (p.pieceServer[piece] != donor) {
        continue; // moved or removed since it was indexed here
      }
      int doc = p.pieceDoc[piece];
      int length = p.docs.length[doc];
      int qs = p.pieceQs[piece];
      int qe = p.pieceQe[piece];
      long piecePairs = p.piecePairs(piece);
      if (piecePairs <= wanted) {
        consider(donor, receiver, donorRelative, piece, qs, qs, qe, qe); // the whole piece
        continue;
      }
      if (qe - qs < 2 * p.minShard) {
        continue;
      }
      // every cut on the grid, rounded so that the moved part shrinks (it stays within what is
      // wanted), or grows where shrinking would leave it shorter than minShard
      if (headTail) {
        int h = Math.max(QueryCuts.headTailRows(qs, qe, wanted), p.minShard);
        int keptFrom = p.cutDown(qs + h, qs);
        if (keptFrom - qs < p.minShard) {
          keptFrom = p.cutUp(qs + h, qe);
        }
        int keptTo = p.cutUp(qe - h, qe);
        if (qe - keptTo < p.minShard) {
          keptTo = p.cutDown(qe - h, qs);
        }
        if (keptTo - keptFrom >= p.minShard) {
          consider(donor, receiver, donorRelative, piece, keptFrom, keptTo, keptFrom, keptTo);
        }
        continue;
      }
      int tail = Math.min(p.cutUp(QueryCuts.tailCut(qs, qe, length, p.causal, wanted), qe),
          p.cutDown(qe - p.minShard, qs));
      if (tail - qs >= p.minShard) {
        consider(donor, receiver, donorRelative, piece, qs, tail, qs, tail); // move [tail, qe)
      }
      int head = Math.max(p.cutDown(QueryCuts.headCut(qs, qe, length, p.causal, wanted), qs),
          p.cutUp(qs + p.minShard, qe));
      if (qe - head >= p.minShard) {
        consider(donor, receiver, donorRelative, piece, head, qe, head, qe); // move [qs, head)
      }
    }
    return bestPiece >= 0;
  }

  /**
   * Evaluates moving everything of {@code piece} outside the kept range [keptFrom, keptTo): its
   * head [qs, movedHeadTo) and its tail [movedTailFrom, qe) (either may be empty).
   */
  private void consider(
      int donor, int receiver, double donorRelative, int piece, int keptFrom, int keptTo, int movedHeadTo,
      int movedTailFrom) {
    Placement p = placement;
    int doc = p.pieceDoc[piece];
    int qs = p.pieceQs[piece];
    int qe = p.pieceQe[piece];
    long moved = p.pairs(doc, qs, movedHeadTo) + p.pairs(doc, movedTailFrom, qe);
    if (moved <= 0 || (p.load[receiver] + moved) / p.target[receiver] >= donorRelative) {
      return; // must strictly lower the larger of the two loads, or the loop could cycle
    }
    long cost = extraKvTokens(donor, receiver, piece, keptFrom, keptTo, movedHeadTo, movedTailFrom);
    if (cost == Long.MAX_VALUE) {
      return;
    }
    if (bestPiece < 0 || isBetter(cost, moved, doc, qs, p)) {
      bestPiece = piece;
      bestKeptFrom = keptFrom;
      bestKeptTo = keptTo;
      bestMovedHeadTo = movedHeadTo;
      bestMovedTailFrom = movedTailFrom;
      bestMoved = moved;
      bestCost = cost;
    }
  }

  /**
   * K/V tokens a move adds to the wire (negative when it saves some): the receiver may need a
   * longer prefix of the document, the donor may need a shorter one. Long.MAX_VALUE when the
   * receiver's byte budget cannot take the move.
   */
  private long extraKvTokens(
      int donor, int receiver, int piece, int keptFrom, int keptTo, int movedHeadTo, int movedTailFrom) {
    Placement p = placement;
    int doc = p.pieceDoc[piece];
    int qs = p.pieceQs[piece];
    int qe = p.pieceQe[piece];
    int movedKvEnd = movedTailFrom < qe ? p.kvEnd(doc, qe) : p.kvEnd(doc, movedHeadTo);
    int keptKvEnd = keptTo > keptFrom ? p.kvEnd(doc, keptTo) : 0;
    int donorBefore = p.kvHeld(doc, donor, -1);
    int donorAfter = Math.max(p.kvHeld(doc, donor, piece), keptKvEnd);
    int receiverBefore = p.kvHeld(doc, receiver, -1);
    int receiverAfter = Math.max(receiverBefore, movedKvEnd);
    int movedRows = (movedHeadTo - qs) + (qe - movedTailFrom);
    if (!p.fitsBudget(receiver, p.addedBytes(doc, receiver, movedRows, movedKvEnd, receiverBefore))) {
      return Long.MAX_VALUE;
    }
    return (long) (donorAfter - donorBefore) + (receiverAfter - receiverBefore);
  }

  /** Fewer extra K/V tokens per pair moved first; then more pairs moved; then document order. */
  private boolean isBetter(long cost, long moved, int doc, int qs, Placement p) {
    // cost / moved < bestCost / bestMoved, compared exactly without division
    int byRatio = Double.compare((double) cost * bestMoved, (double) bestCost * moved);
    if (byRatio != 0) {
      return byRatio < 0;
    }
    if (moved != bestMoved) {
      return moved > bestMoved;
    }
    int bestDoc = p.pieceDoc[bestPiece];
    return doc != bestDoc ? doc < bestDoc : qs < p.pieceQs[bestPiece];
  }

  private void applyBestMove(int donor, int receiver) {
    Placement p = placement;
    int piece = bestPiece;
    int doc = p.pieceDoc[piece];
    int qs = p.pieceQs[piece];
    int qe = p.pieceQe[piece];
    p.removePiece(piece);
    if (bestKeptTo > bestKeptFrom) {
      track(donor, p.addPiece(doc, bestKeptFrom, bestKeptTo, donor));
    }
    if (bestMovedHeadTo > qs) {
      track(receiver, p.addPiece(doc, qs, bestMovedHeadTo, receiver));
    }
    if (bestMovedTailFrom < qe) {
      track(receiver, p.addPiece(doc, bestMovedTailFrom, qe, receiver));
    }
  }
}
