package io.distca.dispatcher.plan;

/** Places the CA-tasks of one training step onto attention servers. Implementations are deterministic. */
public interface Planner {

  /**
   * @throws InvalidPlanInputException when the input cannot be planned as given
   * @throws PlanInfeasibleException when byte budgets cannot be met at any allowed tolerance
   */
  Plan plan(PlanInput input);

  /** Short name used by tools and reports. */
  String name();
}
