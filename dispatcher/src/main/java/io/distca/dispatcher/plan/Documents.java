package io.distca.dispatcher.plan;

import java.util.List;

/**
 * All documents of a step in one rank-major numbering ({@code global = rankOffset[rank] + doc}),
 * with their whole-document pair counts. Built once per plan and shared by every tolerance attempt.
 */
final class Documents {
  final boolean causal;
  final int count;
  final int[] length;
  final int[] rank;
  final int[] indexInRank;
  final int[] rankOffset;
  final double totalPairs;

  Documents(List<int[]> docLengthsPerRank, boolean causal) {
    this.causal = causal;
    int ranks = docLengthsPerRank.size();
    rankOffset = new int[ranks + 1];
    for (int r = 0; r < ranks; r++) {
      rankOffset[r + 1] = Math.addExact(rankOffset[r], docLengthsPerRank.get(r).length);
    }
    count = rankOffset[ranks];
    length = new int[count];
    rank = new int[count];
    indexInRank = new int[count];
    double total = 0;
    for (int r = 0; r < ranks; r++) {
      int[] lengths = docLengthsPerRank.get(r);
      int base = rankOffset[r];
      for (int i = 0; i < lengths.length; i++) {
        length[base + i] = lengths[i];
        rank[base + i] = r;
        indexInRank[base + i] = i;
        total += QueryCuts.documentPairs(lengths[i], causal);
      }
    }
    totalPairs = total;
  }

  /**
   * Non-empty documents by decreasing length (whole-document pairs grow with length), ties by
   * increasing global index; sorted as packed longs because boxing 10^5 documents costs more than
   * the whole greedy.
   */
  int[] longestFirst() {
    long[] keys = new long[count];
    int nonEmpty = 0;
    for (int g = 0; g < count; g++) {
      if (length[g] > 0) {
        keys[nonEmpty++] = ((long) length[g] << 32) | (0xFFFF_FFFFL - g);
      }
    }
    java.util.Arrays.sort(keys, 0, nonEmpty);
    int[] order = new int[nonEmpty];
    for (int i = 0; i < nonEmpty; i++) {
      order[i] = (int) (0xFFFF_FFFFL - (keys[nonEmpty - 1 - i] & 0xFFFF_FFFFL));
    }
    return order;
  }
}
