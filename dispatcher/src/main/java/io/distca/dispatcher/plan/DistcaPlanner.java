package io.distca.dispatcher.plan;

import io.distca.protocol.message.PlannedTask;
import java.util.List;

/**
 * DistCA's communication-aware scheduler, taken past the paper where it stops short (see the
 * Scheduler section of docs/ARCHITECTURE.md for the reasoning and measurements).
 *
 * <ol>
 *   <li>Targets: total pairs shared in proportion to each server's measured throughput; a server
 *       may reach {@code (1 + tolerance) * target}.
 *   <li>Fill ({@link DocumentFiller}), longest documents first onto the server with the least
 *       relative load: a document stays whole when it fits within the tolerance (whole documents
 *       cost no bytes beyond the lower bound), else a piece fills the server exactly to its target
 *       and the rest goes on to the next server, so a long document is split across exactly as
 *       many servers as its FLOPs need.
 *   <li>Rebalance ({@link Rebalancer}): the paper's donor/receiver loop, with donors above the cap
 *       relieved too, moves ranked by extra K/V bytes per FLOP moved.
 *   <li>Byte budgets: when no placement keeps every server within its budget, the tolerance rises
 *       by {@code toleranceStep} and planning starts over, up to {@code maxTolerance}.
 * </ol>
 *
 * <p>Deterministic: ties are broken by server index, document index and query position only.
 */
public final class DistcaPlanner implements Planner {

  /** Phase one: places every document; returns the document it could not place, or -1. */
  interface FillPhase {
    int fill(Placement placement, SplitStyle style);
  }

  private final FillPhase fillPhase;
  private final String name;

  public DistcaPlanner() {
    this(DistcaPlanner::fillLeastLoadedFirst, "distca");
  }

  DistcaPlanner(FillPhase fillPhase, String name) {
    this.fillPhase = fillPhase;
    this.name = name;
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public Plan plan(PlanInput input) {
    long start = System.nanoTime();
    PlanOptions options = input.options();
    Documents docs = new Documents(input.docLengthsPerRank(), input.causal());
    double tolerance = options.tolerance();
    int attempt = 0;
    while (true) {
      Placement placement =
          new Placement(docs, input.servers(), input.shape(), options, tolerance);
      int unplaced = docs.totalPairs > 0 ? fillPhase.fill(placement, options.splitStyle()) : -1;
      if (unplaced < 0) {
        new Rebalancer(placement, options.splitStyle()).rebalance();
        List<List<PlannedTask>> tasks = placement.toTasks();
        return PlanAccounting.account(input, name, tasks, tolerance, start);
      }
      attempt++;
      double next = options.tolerance() + attempt * options.toleranceStep();
      if (next > options.maxTolerance() + 1e-12) {
        throw new PlanInfeasibleException(String.format(
            "no placement keeps every server within its byte budget up to tolerance %.3f: rank %d doc %d"
                + " (%d tokens, %d bytes whole) found no server with room; smallest budget %d bytes",
            tolerance, docs.rank[unplaced], docs.indexInRank[unplaced], docs.length[unplaced],
            placement.addedBytes(unplaced, 0, docs.length[unplaced], docs.length[unplaced], 0),
            smallestBudget(input)));
      }
      tolerance = next;
    }
  }

  private static long smallestBudget(PlanInput input) {
    long smallest = Long.MAX_VALUE;
    for (ServerCapacity server : input.servers()) {
      if (server.hasByteBudget()) {
        smallest = Math.min(smallest, server.byteBudgetPerStep());
      }
    }
    return smallest;
  }

  /**
   * Longest document first, each piece onto the least relatively loaded server with byte room; a
   * document that would be split there goes whole to the server with the most free capacity when
   * it fits (only ever a different server when throughputs differ).
   */
  static int fillLeastLoadedFirst(Placement placement, SplitStyle style) {
    ServerHeap heap = new ServerHeap(placement.load, placement.target);
    ServerHeap roomiest = ServerHeap.byFreeCapacity(placement.load, placement.cap);
    DocumentFiller filler = new DocumentFiller(placement, style);
    int[] skipped = new int[placement.serverCount()];
    for (int doc : placement.docs.longestFirst()) {
      filler.start(doc);
      int first = heap.peek();
      if (!filler.placeWholeIfItFits(first) && roomiest.peek() != first && filler.placeWholeIfItFits(roomiest.peek())) {
        int server = roomiest.peek();
        heap.update(server);
        roomiest.update(server);
        continue;
      }
      if (filler.done()) {
        heap.update(first);
        roomiest.update(first);
        continue;
      }
      while (!filler.done()) {
        int skippedCount = 0;
        boolean placed = false;
        while (!heap.isEmpty()) {
          int server = heap.peek();
          if (filler.placeOn(server, skippedCount == 0)) {
            heap.update(server);
            roomiest.update(server);
            placed = true;
            break;
          }
          skipped[skippedCount++] = heap.poll(); // no byte room for this document: try the next
        }
        for (int i = 0; i < skippedCount; i++) {
          heap.add(skipped[i]);
        }
        if (!placed) {
          return doc;
        }
      }
    }
    return -1;
  }
}
