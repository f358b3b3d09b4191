package io.distca.dispatcher.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.model.ModelSpec;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Properties over hundreds of seeded random inputs, for both planners. */
class PlannerPropertyTest {
  private static final int CASES = 400;

  @Test
  void distcaPlansCoverEveryQueryRowOnceConserveFlopsAndRespectShardMinimumAndCutGrid() {
    SplittableRandom rng = new SplittableRandom(20_251_125);
    DistcaPlanner planner = new DistcaPlanner();
    for (int i = 0; i < CASES; i++) {
      PlanInput input = RandomInputs.next(rng);
      PlanChecks.assertCutsOnGrid(input, validDeterministicPlan(planner, input, i));
    }
  }

  private static Plan validDeterministicPlan(Planner planner, PlanInput input, int caseNumber) {
    Plan plan = planner.plan(input);
    PlanChecks.assertValid(input, plan);
    PlanChecks.assertShardMinimum(input, plan);
    assertTrue(plan.samePlacementAs(planner.plan(input)), "case " + caseNumber + ": not deterministic");
    return plan;
  }

  @Test
  void distcaMatchesTheStraightforwardImplementationOfTheSameGreedy() {
    SplittableRandom rng = new SplittableRandom(7);
    for (int i = 0; i < CASES; i++) {
      PlanInput input = RandomInputs.next(rng);
      Plan fast = new DistcaPlanner().plan(input);
      Plan reference = new ReferenceDistcaPlanner().plan(input);
      assertTrue(fast.samePlacementAs(reference), "case " + i + ": heap and scanning implementations differ");
    }
  }

  @Test
  void greedyPlansCoverEveryQueryRowOnceWithShardsWithinBounds() {
    SplittableRandom rng = new SplittableRandom(99);
    GreedyPlanner planner = new GreedyPlanner();
    for (int i = 0; i < CASES; i++) {
      PlanInput input = RandomInputs.next(rng);
      Plan plan = validDeterministicPlan(planner, input, i);
      PlanOptions options = input.options();
      if (options.maxShardTokens() >= 2 * options.minShardTokens()) {
        for (int r = 0; r < input.ranks(); r++) {
          for (PlannedTask task : plan.tasksOf(r)) {
            assertTrue(task.qEnd() - task.qStart() <= options.maxShardTokens(), "shard longer than maxShard: " + task);
          }
        }
      }
      // a document's cuts are all on the grid, or (where aligned shards would break the bounds) the
      // exact near-equal ones
      for (int r = 0; r < input.ranks(); r++) {
        int[] lengths = input.docLengthsPerRank().get(r);
        List<PlannedTask> tasks = plan.tasksOf(r);
        for (int t = 0; t < tasks.size(); t++) {
          PlannedTask task = tasks.get(t);
          int count = GreedyPlanner.shardCount(lengths[task.doc()], options.minShardTokens(), options.maxShardTokens());
          int index = t - firstTaskOf(tasks, task.doc());
          boolean onGrid = task.qStart() % options.cutAlignTokens() == 0;
          boolean exact = task.qStart() == (int) ((long) index * lengths[task.doc()] / count);
          assertTrue(onGrid || exact, "case " + i + ": greedy cut " + task + " neither on the grid nor exact");
        }
      }
    }
  }

  private static int firstTaskOf(List<PlannedTask> tasks, int doc) {
    int t = 0;
    while (tasks.get(t).doc() != doc) {
      t++;
    }
    return t;
  }

  @Test
  void greedyCutsFallOnTheGridWhenTheBoundsAllow() {
    // default bounds (128..4096) and grid (128): every cut of a document of any length is aligned
    SplittableRandom rng = new SplittableRandom(5);
    int[] lengths = new int[2000];
    for (int d = 0; d < lengths.length; d++) {
      lengths[d] = 1 + rng.nextInt(100_000);
    }
    PlanInput input = new PlanInput(ModelSpec.LLAMA_3_8B.attentionShape(), true, List.of(lengths),
        List.of(ServerCapacity.unlimited("a", 3e14), ServerCapacity.unlimited("b", 3e14)), PlanOptions.defaults());
    Plan plan = new GreedyPlanner().plan(input);
    PlanChecks.assertValid(input, plan);
    PlanChecks.assertShardMinimum(input, plan);
    PlanChecks.assertCutsOnGrid(input, plan);
    assertTrue(plan.tasksOf(0).size() > 2 * lengths.length, "the documents were cut: " + plan.tasksOf(0).size());
  }

  @Test
  void whollyUnsplitDocumentsCostExactlyTheLowerBound() {
    SplittableRandom rng = new SplittableRandom(3);
    for (int i = 0; i < CASES; i++) {
      PlanInput input = RandomInputs.next(rng);
      Plan plan = new DistcaPlanner().plan(input);
      if (plan.splitDocuments() == 0) {
        assertEquals(plan.lowerBoundBytes(), plan.bytesMoved(), "case " + i);
      } else {
        assertTrue(plan.bytesMoved() > plan.lowerBoundBytes(), "case " + i + ": a split ships some K/V twice");
      }
    }
  }
}
