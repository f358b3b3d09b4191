package io.distca.dispatcher.plan;

/**
 * Planner settings. Every field has a documented default ({@link #defaults()}); the canonical
 * constructor validates them all, so an instance that exists is a usable one.
 *
 * @param minShardTokens fewest query rows a split-off piece of a document may have (default 128,
 *     where varlen kernels keep near-peak throughput); a document shorter than this is never split
 * @param maxShardTokens shard size of {@link GreedyPlanner} (default 4096); {@link DistcaPlanner}
 *     sizes pieces by FLOPs instead and ignores it
 * @param tolerance epsilon: a server may carry up to {@code (1 + tolerance)} times its target load
 *     before the planner splits a document to relieve it (default 0.05)
 * @param toleranceStep how much the tolerance rises per retry when a plan would exceed a server's
 *     byte budget (default 0.05)
 * @param maxTolerance the tolerance beyond which a budget-violating plan is reported as infeasible
 *     (default 1.0, i.e. a server at twice its target)
 * @param splitStyle how {@link DistcaPlanner} cuts causal documents (default {@link SplitStyle#PREFIX})
 * @param cutAlignTokens every cut inside a document falls on a multiple of this many tokens of the
 *     document (default 128, the attention kernels' tile height; 1 cuts anywhere). A shard that
 *     starts on the kernels' tile grid wastes no partially visible key block per query tile: on
 *     pretrain-length shards that is about 5% of the fused kernel's computed area (docs/benchmarks.md,
 *     rebatching). At most {@code minShardTokens}.
 */
public record PlanOptions(
    int minShardTokens,
    int maxShardTokens,
    double tolerance,
    double toleranceStep,
    double maxTolerance,
    SplitStyle splitStyle,
    int cutAlignTokens) {

  public static final int DEFAULT_MIN_SHARD_TOKENS = 128;
  public static final int DEFAULT_MAX_SHARD_TOKENS = 4096;
  public static final double DEFAULT_TOLERANCE = 0.05;
  public static final double DEFAULT_TOLERANCE_STEP = 0.05;
  public static final double DEFAULT_MAX_TOLERANCE = 1.0;
  public static final int DEFAULT_CUT_ALIGN_TOKENS = 128;

  public PlanOptions {
    if (minShardTokens < 1) {
      throw new InvalidPlanInputException("minShardTokens must be >= 1, got " + minShardTokens);
    }
    if (maxShardTokens < minShardTokens) {
      throw new InvalidPlanInputException(
          "maxShardTokens (" + maxShardTokens + ") must be >= minShardTokens (" + minShardTokens + ")");
    }
    if (!(tolerance >= 0) || Double.isInfinite(tolerance)) {
      throw new InvalidPlanInputException("tolerance must be finite and >= 0, got " + tolerance);
    }
    if (!(toleranceStep > 0) || Double.isInfinite(toleranceStep)) {
      throw new InvalidPlanInputException("toleranceStep must be finite and > 0, got " + toleranceStep);
    }
    if (!(maxTolerance >= tolerance) || Double.isInfinite(maxTolerance)) {
      throw new InvalidPlanInputException(
          "maxTolerance (" + maxTolerance + ") must be finite and >= tolerance (" + tolerance + ")");
    }
    if (splitStyle == null) {
      throw new InvalidPlanInputException("splitStyle must not be null");
    }
    if (cutAlignTokens < 1 || cutAlignTokens > minShardTokens) {
      throw new InvalidPlanInputException(
          "cutAlignTokens must be in [1, minShardTokens (" + minShardTokens + ")], got " + cutAlignTokens);
    }
  }

  public static PlanOptions defaults() {
    return new PlanOptions(
        DEFAULT_MIN_SHARD_TOKENS,
        DEFAULT_MAX_SHARD_TOKENS,
        DEFAULT_TOLERANCE,
        DEFAULT_TOLERANCE_STEP,
        DEFAULT_MAX_TOLERANCE,
        SplitStyle.PREFIX,
        DEFAULT_CUT_ALIGN_TOKENS);
  }

  public PlanOptions withTolerance(double newTolerance) {
    return new PlanOptions(
        minShardTokens, maxShardTokens, newTolerance, toleranceStep,
        Math.max(maxTolerance, newTolerance), splitStyle, cutAlignTokens);
  }

  /** New shard bounds; the cut alignment drops to the new minimum if it was larger (e.g. 128 -> 16). */
  public PlanOptions withShardTokens(int newMinShardTokens, int newMaxShardTokens) {
    return new PlanOptions(newMinShardTokens, newMaxShardTokens, tolerance, toleranceStep, maxTolerance, splitStyle,
        Math.max(1, Math.min(cutAlignTokens, newMinShardTokens)));
  }

  public PlanOptions withToleranceSteps(double newToleranceStep, double newMaxTolerance) {
    return new PlanOptions(
        minShardTokens, maxShardTokens, tolerance, newToleranceStep, newMaxTolerance, splitStyle, cutAlignTokens);
  }

  public PlanOptions withSplitStyle(SplitStyle newSplitStyle) {
    return new PlanOptions(
        minShardTokens, maxShardTokens, tolerance, toleranceStep, maxTolerance, newSplitStyle, cutAlignTokens);
  }

  public PlanOptions withCutAlignTokens(int newCutAlignTokens) {
    return new PlanOptions(minShardTokens, maxShardTokens, tolerance, toleranceStep, maxTolerance, splitStyle, newCutAlignTokens);
  }
}
