package io.distca.dispatcher.plan;

import io.distca.protocol.message.PlannedTask;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The simple FLOP-balancing planner: every document's query range is cut into near-equal shards of
 * at most {@code maxShardTokens} rows (never fewer than {@code minShardTokens}, except that a
 * document shorter than that is one shard), each shard with its K/V prefix {@code [0, qe)} (causal)
 * or the whole document (full attention), every cut on a multiple of {@code cutAlignTokens} where
 * the aligned shards stay within those bounds; shards are then assigned longest-FLOPs-first to the
 * server with the least load relative to its throughput (LPT). It ignores byte budgets and pays for
 * its simplicity in bytes: a long document's K/V goes to many servers.
 */
public final class GreedyPlanner implements Planner {

  @Override
  public String name() {
    return "greedy";
  }

  /** Number of shards for a document of {@code length} tokens. */
  static int shardCount(int length, int minShard, int maxShard) {
    if (length <= 0) {
      return 0;
    }
    int count = (int) ((length + (long) maxShard - 1) / maxShard);
    if (length / count < minShard) {
      count = Math.max(1, length / minShard); // fewer, longer shards rather than any below minShard
    }
    return count;
  }

  /**
   * Start of shard {@code index} of {@code count}: near-equal shards, every inner cut on a multiple
   * of {@code grid} (the document's {@code ceil(length / grid)} grid units shared out evenly).
   */
  static int shardStart(int length, int count, int index, int grid) {
    if (index >= count) {
      return length;
    }
    long units = ((long) length + grid - 1) / grid;
    return (int) Math.min(length, index * units / count * grid);
  }

  /**
   * The grid a document's cuts use: {@code grid} when the aligned shards all stay within
   * [minShard, maxShard], else 1 (the exact near-equal cuts, as without alignment).
   */
  static int cutGrid(int length, int count, int minShard, int maxShard, int grid) {
    for (int i = 0; grid > 1 && count > 1 && i < count; i++) {
      int size = shardStart(length, count, i + 1, grid) - shardStart(length, count, i, grid);
      if (size < minShard || size > maxShard) {
        return 1;
      }
    }
    return grid;
  }

  @Override
  public Plan plan(PlanInput input) {
    long start = System.nanoTime();
    PlanOptions options = input.options();
    Documents docs = new Documents(input.docLengthsPerRank(), input.causal());
    int grid = options.cutAlignTokens();
    int[] firstShard = new int[docs.count + 1];
    for (int g = 0; g < docs.count; g++) {
      firstShard[g + 1] = firstShard[g] + shardCount(docs.length[g], options.minShardTokens(), options.maxShardTokens());
    }
    int shards = firstShard[docs.count];
    int[] shardDoc = new int[shards];
    long[] shardPairs = new long[shards];
    int[] shardQs = new int[shards];
    int[] shardQe = new int[shards];
    for (int g = 0; g < docs.count; g++) {
      int count = firstShard[g + 1] - firstShard[g];
      int docGrid = cutGrid(docs.length[g], count, options.minShardTokens(), options.maxShardTokens(), grid);
      for (int i = 0; i < count; i++) {
        int shard = firstShard[g] + i;
        shardDoc[shard] = g;
        shardQs[shard] = shardStart(docs.length[g], count, i, docGrid);
        shardQe[shard] = shardStart(docs.length[g], count, i + 1, docGrid);
        shardPairs[shard] = QueryCuts.rangePairs(shardQs[shard], shardQe[shard], docs.length[g], docs.causal);
      }
    }
    Integer[] order = new Integer[shards];
    for (int i = 0; i < shards; i++) {
      order[i] = i;
    }
    // most pairs first; ties in shard order, which is (document, query start) order
    Arrays.sort(order, (x, y) -> shardPairs[x] != shardPairs[y] ? Long.compare(shardPairs[y], shardPairs[x]) : Integer.compare(x, y));

    int serverCount = input.serverCount();
    double totalThroughput = 0;
    for (ServerCapacity server : input.servers()) {
      totalThroughput += server.flopsPerSecond();
    }
    double[] load = new double[serverCount];
    double[] target = new double[serverCount];
    for (int s = 0; s < serverCount; s++) {
      target[s] = input.servers().get(s).flopsPerSecond() / totalThroughput;
    }
    ServerHeap heap = new ServerHeap(load, target);
    int[] shardServer = new int[shards];
    for (int shard : order) {
      int server = heap.peek();
      shardServer[shard] = server;
      load[server] += shardPairs[shard];
      heap.update(server);
    }

    List<List<PlannedTask>> tasksPerRank = new ArrayList<>(input.ranks());
    for (int r = 0; r < input.ranks(); r++) {
      List<PlannedTask> tasks = new ArrayList<>();
      for (int g = docs.rankOffset[r]; g < docs.rankOffset[r + 1]; g++) {
        for (int shard = firstShard[g]; shard < firstShard[g + 1]; shard++) {
          int kvEnd = QueryCuts.kvEnd(shardQe[shard], docs.length[g], docs.causal);
          tasks.add(new PlannedTask(docs.indexInRank[g], shardQs[shard], shardQe[shard], 0, kvEnd, shardServer[shard]));
        }
      }
      tasksPerRank.add(tasks);
    }
    return PlanAccounting.account(input, name(), tasksPerRank, 0.0, start);
  }
}
