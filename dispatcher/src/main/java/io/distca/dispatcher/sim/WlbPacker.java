package io.distca.dispatcher.sim;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.PriorityQueue;
import java.util.function.IntToDoubleFunction;

/**
 * The colocated baseline's packer, in the spirit of WLB-LLM's variable-length packing: the documents
 * of a window of consecutive ranks are re-packed among those ranks to balance each rank's total
 * work (linear parts plus its own attention), largest work first onto the least loaded rank, with a
 * rank's tokens capped at {@code (1 + slack)} times the window's average (memory bounds a packed
 * sequence). A window of all ranks is the strongest form of this baseline.
 */
public final class WlbPacker {
  private WlbPacker() {}

  /**
   * @param work time of one document on a rank (linear and attention), by its length
   * @return the documents of each rank after packing
   */
  public static List<int[]> pack(
      List<int[]> docsPerRank, int windowRanks, double tokenSlack, IntToDoubleFunction work) {
    List<int[]> result = new ArrayList<>(docsPerRank.size());
    for (int from = 0; from < docsPerRank.size(); from += windowRanks) {
      int to = Math.min(docsPerRank.size(), from + windowRanks);
      result.addAll(packWindow(docsPerRank.subList(from, to), tokenSlack, work));
    }
    return result;
  }

  private static List<int[]> packWindow(List<int[]> docsPerRank, double tokenSlack, IntToDoubleFunction work) {
    int ranks = docsPerRank.size();
    int total = 0;
    long tokens = 0;
    for (int[] lengths : docsPerRank) {
      total += lengths.length;
      for (int length : lengths) {
        tokens += length;
      }
    }
    int[] all = new int[total];
    int next = 0;
    for (int[] lengths : docsPerRank) {
      System.arraycopy(lengths, 0, all, next, lengths.length);
      next += lengths.length;
    }
    Arrays.sort(all); // work grows with length: packing longest first is packing most work first
    double tokenCap = Math.ceil((double) tokens / ranks * (1 + tokenSlack));
    double[] load = new double[ranks];
    long[] rankTokens = new long[ranks];
    List<List<Integer>> packed = new ArrayList<>();
    for (int r = 0; r < ranks; r++) {
      packed.add(new ArrayList<>());
    }
    PriorityQueue<Integer> leastLoaded = new PriorityQueue<>(
        (a, b) -> load[a] != load[b] ? Double.compare(load[a], load[b]) : Integer.compare(a, b));
    for (int r = 0; r < ranks; r++) {
      leastLoaded.add(r);
    }
    List<Integer> full = new ArrayList<>();
    for (int i = total - 1; i >= 0; i--) {
      int length = all[i];
      Integer rank = null;
      while (!leastLoaded.isEmpty()) {
        Integer candidate = leastLoaded.poll();
        if (rankTokens[candidate] + length <= tokenCap) {
          rank = candidate;
          break;
        }
        full.add(candidate);
      }
      if (rank == null) {
        rank = mostRoom(full, rankTokens); // no rank has room: the one with the most takes the overflow
        full.remove(rank);
      }
      packed.get(rank).add(length);
      load[rank] += work.applyAsDouble(length);
      rankTokens[rank] += length;
      leastLoaded.add(rank);
      leastLoaded.addAll(full);
      full.clear();
    }
    List<int[]> result = new ArrayList<>(ranks);
    for (List<Integer> lengths : packed) {
      result.add(lengths.stream().mapToInt(Integer::intValue).toArray());
    }
    return result;
  }

  private static Integer mostRoom(List<Integer> ranks, long[] rankTokens) {
    Integer best = ranks.get(0);
    for (Integer rank : ranks) {
      if (rankTokens[rank] < rankTokens[best] || (rankTokens[rank] == rankTokens[best] && rank < best)) {
        best = rank;
      }
    }
    return best;
  }
}
