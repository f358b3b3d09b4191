package io.distca.dispatcher.plan;

import io.distca.protocol.message.PlannedTask;
import java.util.List;

/**
 * A step's placement of CA-tasks and what it costs. Byte and FLOP figures are per layer and
 * forward (backward moves and computes proportionally more for the same placement).
 *
 * @param planner the planner that made it
 * @param tasksPerRank per trainer rank, its tasks sorted by (doc, qStart); {@code server} indexes the
 *     input's servers
 * @param serverLoads per server, in input order
 * @param totalFlops forward FLOPs of all documents (conserved by every valid plan)
 * @param imbalance max over servers of load / target (1.0 is perfect)
 * @param bytesMoved bytes on the wire for all tasks, each document's K/V counted once per server
 * @param lowerBoundBytes every Q, K, V, O, LSE element of every document crossing the wire once
 * @param splitDocuments documents whose tasks run on more than one server
 * @param toleranceUsed the tolerance the plan was made at: 0 for planners without one; above the
 *     option's when byte budgets demanded it
 * @param planNanos wall time to compute the plan, accounting included
 */
public record Plan(
    String planner,
    List<List<PlannedTask>> tasksPerRank,
    List<ServerLoad> serverLoads,
    double totalFlops,
    double imbalance,
    long bytesMoved,
    long lowerBoundBytes,
    int splitDocuments,
    double toleranceUsed,
    long planNanos) {

  public List<PlannedTask> tasksOf(int rank) {
    return tasksPerRank.get(rank);
  }

  public int taskCount() {
    int count = 0;
    for (List<PlannedTask> tasks : tasksPerRank) {
      count += tasks.size();
    }
    return count;
  }

  /** bytesMoved / lowerBoundBytes; 1.0 when nothing needs to move. */
  public double bytesRatio() {
    return lowerBoundBytes == 0 ? 1.0 : (double) bytesMoved / lowerBoundBytes;
  }

  /** K/V shipped more than once because documents were split: the overhead a planner minimises. */
  public long duplicatedKvBytes() {
    return bytesMoved - lowerBoundBytes;
  }

  /** Same tasks and loads; ignores timing. */
  public boolean samePlacementAs(Plan other) {
    return tasksPerRank.equals(other.tasksPerRank) && serverLoads.equals(other.serverLoads);
  }
}
