package io.distca.dispatcher.plan;

import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Turns a placement (tasks per rank) into the figures a {@link Plan} reports, with the per-task
 * masking of {@link CostModel}: a causal task with keys {@code [kvStart, kvEnd)} sees its keys
 * through diagonal {@code qStart - kvStart}. Both planners use it, so their figures are comparable.
 */
final class PlanAccounting {
  private PlanAccounting() {}

  static Plan account(
      PlanInput input, String planner, List<List<PlannedTask>> tasksPerRank, double toleranceUsed, long startNanos) {
    AttentionShape shape = input.shape();
    boolean causal = input.causal();
    int serverCount = input.serverCount();

    double totalThroughput = 0;
    for (ServerCapacity server : input.servers()) {
      totalThroughput += server.flopsPerSecond();
    }
    double totalFlops = 0;
    long lowerBound = 0;
    for (int[] lengths : input.docLengthsPerRank()) {
      for (int length : lengths) {
        totalFlops += CostModel.forwardFlops(length, length, shape.headsQ(), shape.headDim(), causal);
        if (length > 0) {
          lowerBound += CostModel.forwardBytesIn(length, length, shape) + CostModel.forwardBytesOut(length, shape);
        }
      }
    }

    double[] flops = new double[serverCount];
    long[] bytesIn = new long[serverCount];
    long[] bytesOut = new long[serverCount];
    int[] taskCounts = new int[serverCount];
    int splitDocuments = 0;
    int[] order = new int[16];
    List<List<PlannedTask>> frozen = new ArrayList<>(tasksPerRank.size());
    for (List<PlannedTask> rankTasks : tasksPerRank) {
      int from = 0;
      while (from < rankTasks.size()) {
        int doc = rankTasks.get(from).doc();
        int to = from + 1;
        while (to < rankTasks.size() && rankTasks.get(to).doc() == doc) {
          to++;
        }
        boolean split = false;
        for (int i = from; i < to; i++) {
          PlannedTask task = rankTasks.get(i);
          int q = task.qEnd() - task.qStart();
          int server = task.server();
          flops[server] += CostModel.forwardFlops(
              q, task.kvEnd() - task.kvStart(), shape.headsQ(), shape.headDim(), causal, task.qStart() - task.kvStart());
          bytesIn[server] += CostModel.forwardBytesIn(q, 0, shape);
          bytesOut[server] += CostModel.forwardBytesOut(q, shape);
          taskCounts[server]++;
          split |= server != rankTasks.get(from).server();
        }
        if (split) {
          splitDocuments++;
        }
        if (order.length < to - from) {
          order = new int[Math.max(to - from, order.length * 2)];
        }
        addKvBytes(rankTasks, from, to, order, shape, bytesIn);
        from = to;
      }
      frozen.add(List.copyOf(rankTasks));
    }

    List<ServerLoad> loads = new ArrayList<>(serverCount);
    double imbalance = totalFlops > 0 ? 0 : 1.0;
    for (int s = 0; s < serverCount; s++) {
      ServerCapacity server = input.servers().get(s);
      double target = totalFlops * server.flopsPerSecond() / totalThroughput;
      ServerLoad load = new ServerLoad(s, server.serverId(), taskCounts[s], flops[s], target, bytesIn[s], bytesOut[s]);
      loads.add(load);
      if (totalFlops > 0) {
        imbalance = Math.max(imbalance, load.relativeLoad());
      }
    }
    long bytesMoved = 0;
    for (int s = 0; s < serverCount; s++) {
      bytesMoved += bytesIn[s] + bytesOut[s];
    }
    return new Plan(
        planner, List.copyOf(frozen), List.copyOf(loads), totalFlops, imbalance, bytesMoved, lowerBound,
        splitDocuments, toleranceUsed, System.nanoTime() - startNanos);
  }

  /** K/V of one document's tasks [from, to): the union of their key ranges, once per server. */
  private static void addKvBytes(
      List<PlannedTask> tasks, int from, int to, int[] order, AttentionShape shape, long[] bytesIn) {
    if (to - from == 1) {
      PlannedTask task = tasks.get(from);
      bytesIn[task.server()] += CostModel.forwardBytesIn(0, task.kvEnd() - task.kvStart(), shape);
      return;
    }
    int n = to - from;
    long[] keys = new long[n];
    for (int i = 0; i < n; i++) {
      PlannedTask task = tasks.get(from + i);
      // server in the high bits, kvStart below, index last: sorting groups a server's ranges in start order
      keys[i] = ((long) task.server() << 40) | ((long) task.kvStart() << 8) | i;
      order[i] = i;
    }
    if (n > 256) {
      // the packed index only has 8 bits; fall back to an exact sort for documents with many tasks
      Integer[] boxed = new Integer[n];
      for (int i = 0; i < n; i++) {
        boxed[i] = i;
      }
      Arrays.sort(boxed, (x, y) -> {
        PlannedTask a = tasks.get(from + x);
        PlannedTask b = tasks.get(from + y);
        return a.server() != b.server() ? Integer.compare(a.server(), b.server()) : Integer.compare(a.kvStart(), b.kvStart());
      });
      for (int i = 0; i < n; i++) {
        order[i] = boxed[i];
      }
    } else {
      Arrays.sort(keys);
      for (int i = 0; i < n; i++) {
        order[i] = (int) (keys[i] & 0xFF);
      }
    }
    int i = 0;
    while (i < n) {
      PlannedTask first = tasks.get(from + order[i]);
      int server = first.server();
      long covered = 0;
      int runStart = first.kvStart();
      int runEnd = first.kvEnd();
      i++;
      while (i < n && tasks.get(from + order[i]).server() == server) {
        PlannedTask next = tasks.get(from + order[i]);
        if (next.kvStart() > runEnd) {
          covered += runEnd - runStart;
          runStart = next.kvStart();
          runEnd = next.kvEnd();
        } else {
          runEnd = Math.max(runEnd, next.kvEnd());
        }
        i++;
      }
      covered += runEnd - runStart;
      bytesIn[server] += CostModel.forwardBytesIn(0, covered, shape);
    }
  }
}
