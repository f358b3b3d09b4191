package io.distca.dispatcher.plan;

/**
 * What the planner knows of one attention server.
 *
 * @param serverId stable identifier (unique within one plan input)
 * @param flopsPerSecond measured attention throughput; target loads are proportional to it
 * @param byteBudgetPerStep most bytes this server may receive and send for its tasks of one step
 *     (one layer's forward, which bounds the memory of in-flight tasks); 0 means unlimited
 */
public record ServerCapacity(String serverId, double flopsPerSecond, long byteBudgetPerStep) {

  public ServerCapacity {
    if (serverId == null || serverId.isBlank()) {
      throw new InvalidPlanInputException("serverId must be a non-blank string");
    }
    if (!(flopsPerSecond > 0) || Double.isInfinite(flopsPerSecond)) {
      throw new InvalidPlanInputException(
          "server " + serverId + ": flopsPerSecond must be positive and finite, got " + flopsPerSecond);
    }
    if (byteBudgetPerStep < 0) {
      throw new InvalidPlanInputException(
          "server " + serverId + ": byteBudgetPerStep must be >= 0 (0 = unlimited), got " + byteBudgetPerStep);
    }
  }

  public static ServerCapacity unlimited(String serverId, double flopsPerSecond) {
    return new ServerCapacity(serverId, flopsPerSecond, 0);
  }

  public boolean hasByteBudget() {
    return byteBudgetPerStep > 0;
  }
}
