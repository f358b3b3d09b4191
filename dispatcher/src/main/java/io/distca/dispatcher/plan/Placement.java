package io.distca.dispatcher.plan;

import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Mutable state of one planning attempt: the pieces placed so far (a piece is query rows
 * {@code [qs, qe)} of a document with its K/V prefix, on one server), every server's load in pairs
 * and its bytes. Bytes follow the K/V dedup rule: a document's pieces on one server share one copy
 * of the longest prefix among them.
 */
final class Placement {
  final Documents docs;
  final boolean causal;
  final int minShard;
  /** Cuts inside a document fall on multiples of this (PlanOptions.cutAlignTokens). */
  final int grid;

  final double[] load;
  final double[] target;
  final double[] cap;
  final double[] floor;
  final long[] byteBudget;
  final long[] bytesUsed;
  /** Q in plus O and LSE out, per query row. */
  final long rowBytes;
  /** K and V in, per key token. */
  final long kvTokenBytes;

  private final int[] docFirstPiece;
  int pieceCount;
  int[] pieceDoc = new int[1024];
  int[] pieceQs = new int[1024];
  int[] pieceQe = new int[1024];
  /** -1 once removed. */
  int[] pieceServer = new int[1024];
  private int[] pieceNext = new int[1024];

  Placement(Documents docs, List<ServerCapacity> servers, AttentionShape shape, PlanOptions options, double tolerance) {
    this.docs = docs;
    this.causal = docs.causal;
    this.minShard = options.minShardTokens();
    this.grid = options.cutAlignTokens();
    int serverCount = servers.size();
    load = new double[serverCount];
    target = new double[serverCount];
    cap = new double[serverCount];
    floor = new double[serverCount];
    byteBudget = new long[serverCount];
    bytesUsed = new long[serverCount];
    double totalThroughput = 0;
    for (ServerCapacity server : servers) {
      totalThroughput += server.flopsPerSecond();
    }
    for (int s = 0; s < serverCount; s++) {
      ServerCapacity server = servers.get(s);
      target[s] = docs.totalPairs * server.flopsPerSecond() / totalThroughput;
      cap[s] = target[s] * (1 + tolerance);
      floor[s] = target[s] * (1 - tolerance);
      byteBudget[s] = server.byteBudgetPerStep();
    }
    rowBytes = CostModel.forwardBytesIn(1, 0, shape) + CostModel.forwardBytesOut(1, shape);
    kvTokenBytes = CostModel.forwardBytesIn(0, 1, shape);
    docFirstPiece = new int[docs.count];
    Arrays.fill(docFirstPiece, -1);
  }

  /** A cut at or after {@code c} on the grid, at most {@code limit}. */
  int cutUp(int c, int limit) {
    return QueryCuts.alignUp(c, grid, limit);
  }

  /** A cut at or before {@code c} on the grid, at least {@code floor}. */
  int cutDown(int c, int floor) {
    return QueryCuts.alignDown(c, grid, floor);
  }

  int serverCount() {
    return load.length;
  }

  double relativeLoad(int server) {
    return load[server] / target[server];
  }

  int kvEnd(int doc, int qe) {
    return QueryCuts.kvEnd(qe, docs.length[doc], causal);
  }

  long pairs(int doc, int qs, int qe) {
    return QueryCuts.rangePairs(qs, qe, docs.length[doc], causal);
  }

  long piecePairs(int piece) {
    return pairs(pieceDoc[piece], pieceQs[piece], pieceQe[piece]);
  }

  /** Longest K/V prefix that pieces of {@code doc} on {@code server} already hold, skipping one piece. */
  int kvHeld(int doc, int server, int exceptPiece) {
    int held = 0;
    for (int p = docFirstPiece[doc]; p >= 0; p = pieceNext[p]) {
      if (p != exceptPiece && pieceServer[p] == server) {
        held = Math.max(held, kvEnd(doc, pieceQe[p]));
      }
    }
    return held;
  }

  /** Bytes that adding rows with K/V prefix {@code kvEnd} of {@code doc} to {@code server} costs. */
  long addedBytes(int doc, int server, int rows, int kvEnd, int kvAlreadyHeld) {
    return rows * rowBytes + Math.max(0, kvEnd - kvAlreadyHeld) * kvTokenBytes;
  }

  boolean fitsBudget(int server, long extraBytes) {
    return byteBudget[server] == 0 || bytesUsed[server] + extraBytes <= byteBudget[server];
  }

  /** Bytes still free under the server's budget; Long.MAX_VALUE when it has none. */
  long bytesLeft(int server) {
    return byteBudget[server] == 0 ? Long.MAX_VALUE : byteBudget[server] - bytesUsed[server];
  }

  int addPiece(int doc, int qs, int qe, int server) {
    int held = kvHeld(doc, server, -1);
    if (pieceCount == pieceDoc.length) {
      int size = pieceCount * 2;
      pieceDoc = Arrays.copyOf(pieceDoc, size);
      pieceQs = Arrays.copyOf(pieceQs, size);
      pieceQe = Arrays.copyOf(pieceQe, size);
      pieceServer = Arrays.copyOf(pieceServer, size);
      pieceNext = Arrays.copyOf(pieceNext, size);
    }
    int piece = pieceCount++;
    pieceDoc[piece] = doc;
    pieceQs[piece] = qs;
    pieceQe[piece] = qe;
    pieceServer[piece] = server;
    pieceNext[piece] = docFirstPiece[doc];
    docFirstPiece[doc] = piece;
    load[server] += pairs(doc, qs, qe);
    bytesUsed[server] += addedBytes(doc, server, qe - qs, kvEnd(doc, qe), held);
    return piece;
  }

  void removePiece(int piece) {
    int doc = pieceDoc[piece];
    int server = pieceServer[piece];
    int heldBefore = kvHeld(doc, server, -1);
    int heldAfter = kvHeld(doc, server, piece);
    load[server] -= piecePairs(piece);
    bytesUsed[server] -= (pieceQe[piece] - pieceQs[piece]) * rowBytes + (long) (heldBefore - heldAfter) * kvTokenBytes;
    pieceServer[piece] = -1;
    if (docFirstPiece[doc] == piece) {
      docFirstPiece[doc] = pieceNext[piece];
    } else {
      int p = docFirstPiece[doc];
      while (pieceNext[p] != piece) {
        p = pieceNext[p];
      }
      pieceNext[p] = pieceNext[piece];
    }
  }

  /**
   * The plan's tasks per rank, sorted by (doc, qStart). Adjacent pieces of a document on the same
   * server become one task: same K/V, one kernel segment instead of two.
   */
  List<List<PlannedTask>> toTasks() {
    int ranks = docs.rankOffset.length - 1;
    List<List<PlannedTask>> perRank = new ArrayList<>(ranks);
    int[] scratch = new int[8];
    for (int r = 0; r < ranks; r++) {
      int from = docs.rankOffset[r];
      int to = docs.rankOffset[r + 1];
      List<PlannedTask> tasks = new ArrayList<>(to - from);
      for (int g = from; g < to; g++) {
        int first = docFirstPiece[g];
        if (first < 0) {
          continue;
        }
        if (pieceNext[first] < 0) {
          tasks.add(task(g, pieceQs[first], pieceQe[first], pieceServer[first]));
          continue;
        }
        int n = 0;
        for (int p = first; p >= 0; p = pieceNext[p]) {
          if (n == scratch.length) {
            scratch = Arrays.copyOf(scratch, n * 2);
          }
          scratch[n++] = p;
        }
        sortByQueryStart(scratch, n);
        int qs = pieceQs[scratch[0]];
        int qe = pieceQe[scratch[0]];
        int server = pieceServer[scratch[0]];
        for (int i = 1; i < n; i++) {
          int p = scratch[i];
          if (pieceServer[p] == server && pieceQs[p] == qe) {
            qe = pieceQe[p];
          } else {
            tasks.add(task(g, qs, qe, server));
            qs = pieceQs[p];
            qe = pieceQe[p];
            server = pieceServer[p];
          }
        }
        tasks.add(task(g, qs, qe, server));
      }
      perRank.add(tasks);
    }
    return perRank;
  }

  private PlannedTask task(int doc, int qs, int qe, int server) {
    return new PlannedTask(docs.indexInRank[doc], qs, qe, 0, kvEnd(doc, qe), server);
  }

  private void sortByQueryStart(int[] pieces, int n) {
    for (int i = 1; i < n; i++) {
      int p = pieces[i];
      int j = i - 1;
      while (j >= 0 && pieceQs[pieces[j]] > pieceQs[p]) {
        pieces[j + 1] = pieces[j];
        j--;
      }
      pieces[j + 1] = p;
    }
  }
}
