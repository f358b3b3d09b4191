package io.distca.dispatcher.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** Invariants every plan must satisfy, recomputed from the tasks independently of the planners. */
final class PlanChecks {
  private PlanChecks() {}

  /**
   * Every query row of every document covered exactly once; every causal row sees exactly the keys
   * [0, p] through its task's key range; per-server FLOPs and bytes as reported; FLOPs conserved.
   */
  static void assertValid(PlanInput input, Plan plan) {
    AttentionShape shape = input.shape();
    int servers = input.serverCount();
    assertEquals(input.ranks(), plan.tasksPerRank().size(), "one task list per rank");
    double[] flops = new double[servers];
    long[] bytes = new long[servers];
    double documentFlops = 0;
    for (int rank = 0; rank < input.ranks(); rank++) {
      int[] lengths = input.docLengthsPerRank().get(rank);
      List<List<PlannedTask>> byDoc = new ArrayList<>();
      for (int d = 0; d < lengths.length; d++) {
        byDoc.add(new ArrayList<>());
      }
      PlannedTask previous = null;
      for (PlannedTask task : plan.tasksOf(rank)) {
        String where = "rank " + rank + " task " + task;
        assertTrue(task.doc() >= 0 && task.doc() < lengths.length, where + ": doc index out of range");
        assertTrue(task.server() >= 0 && task.server() < servers, where + ": server index out of range");
        assertTrue(task.qStart() < task.qEnd(), where + ": empty query range");
        if (previous != null) {
          assertTrue(previous.doc() < task.doc() || (previous.doc() == task.doc() && previous.qStart() < task.qStart()),
              where + ": tasks not sorted by (doc, qStart)");
        }
        previous = task;
        byDoc.get(task.doc()).add(task);
      }
      for (int d = 0; d < lengths.length; d++) {
        int length = lengths[d];
        documentFlops += CostModel.forwardFlops(length, length, shape.headsQ(), shape.headDim(), input.causal());
        List<PlannedTask> tasks = byDoc.get(d);
        tasks.sort(Comparator.comparingInt(PlannedTask::qStart));
        int covered = 0;
        for (PlannedTask task : tasks) {
          String where = "rank " + rank + " doc " + d + " (" + length + " tokens) task " + task;
          assertEquals(covered, task.qStart(), where + ": query rows not covered exactly once");
          covered = task.qEnd();
          // query row p sees keys [kvStart, min(kvEnd, p + 1)) (causal) or [kvStart, kvEnd): both must be
          // exactly the keys the unsplit document gives it
          assertEquals(0, task.kvStart(), where + ": keys must start at the document's first token");
          int expectedKvEnd = input.causal() ? task.qEnd() : length;
          if (input.causal()) {
            assertTrue(task.kvEnd() >= expectedKvEnd && task.kvEnd() <= length, where + ": key range misses keys");
          } else {
            assertEquals(length, task.kvEnd(), where + ": full attention needs every key");
          }
          double taskFlops = CostModel.forwardFlops(task.qEnd() - task.qStart(), task.kvEnd() - task.kvStart(),
              shape.headsQ(), shape.headDim(), input.causal(), task.qStart() - task.kvStart());
          flops[task.server()] += taskFlops;
          bytes[task.server()] += CostModel.forwardBytesIn(task.qEnd() - task.qStart(), 0, shape)
              + CostModel.forwardBytesOut(task.qEnd() - task.qStart(), shape);
        }
        assertEquals(length, covered, "rank " + rank + " doc " + d + ": query rows covered up to " + covered);
        // K/V: once per server per document, the longest prefix any of its tasks there needs
        for (int s = 0; s < servers; s++) {
          int longest = 0;
          for (PlannedTask task : tasks) {
            if (task.server() == s) {
              longest = Math.max(longest, task.kvEnd());
            }
          }
          bytes[s] += CostModel.forwardBytesIn(0, longest, shape);
        }
      }
    }
    double planned = 0;
    long plannedBytes = 0;
    for (int s = 0; s < servers; s++) {
      ServerLoad load = plan.serverLoads().get(s);
      assertEquals(s, load.server());
      assertEquals(flops[s], load.forwardFlops(), 1e-9 * Math.max(1, flops[s]), "server " + s + " FLOPs");
      assertEquals(bytes[s], load.bytes(), "server " + s + " bytes");
      planned += load.forwardFlops();
      plannedBytes += load.bytes();
    }
    assertEquals(documentFlops, planned, 1e-9 * Math.max(1, documentFlops), "FLOPs not conserved");
    assertEquals(documentFlops, plan.totalFlops(), 1e-9 * Math.max(1, documentFlops));
    assertEquals(plannedBytes, plan.bytesMoved());
    assertTrue(plan.bytesMoved() >= plan.lowerBoundBytes(), "bytes below the lower bound");
  }

  /** Every task of a split document has at least minShard query rows. */
  static void assertShardMinimum(PlanInput input, Plan plan) {
    int minShard = input.options().minShardTokens();
    for (int rank = 0; rank < input.ranks(); rank++) {
      int[] lengths = input.docLengthsPerRank().get(rank);
      for (PlannedTask task : plan.tasksOf(rank)) {
        int rows = task.qEnd() - task.qStart();
        if (rows < minShard && rows != lengths[task.doc()]) {
          fail("rank " + rank + " task " + task + " has " + rows + " query rows, fewer than minShard " + minShard
              + " though its document has " + lengths[task.doc()]);
        }
      }
    }
  }

  /** Every cut inside a document (a task start other than 0) falls on a multiple of cutAlignTokens. */
  static void assertCutsOnGrid(PlanInput input, Plan plan) {
    int grid = input.options().cutAlignTokens();
    for (int rank = 0; rank < input.ranks(); rank++) {
      for (PlannedTask task : plan.tasksOf(rank)) {
        if (task.qStart() % grid != 0) {
          fail("rank " + rank + " task " + task + " starts at " + task.qStart() + ", off the cut grid of " + grid);
        }
      }
    }
  }
}
