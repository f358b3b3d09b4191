package io.distca.dispatcher.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.PlannedTask;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Properties over hundreds of seeded random inputs, for both planners. */
class PlannerPropertyTest {
  private static final int CASES = 400;

  @Test
  void distcaPlansCoverEveryQueryRowOnceConserveFlopsAndRespectShardMinimum() {
    SplittableRandom rng = new SplittableRandom(20_251_125);
    DistcaPlanner planner = new DistcaPlanner();
    for (int i = 0; i < CASES; i++) {
      validDeterministicPlan(planner, RandomInputs.next(rng), i);
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
    }
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
