package io.distca.dispatcher.sim;

/**
 * One simulated training step, colocated against disaggregated.
 *
 * @param colocatedSeconds step time with WLB-packed colocated attention (slowest rank)
 * @param disaggregatedSeconds step time with attention placed by the plan
 * @param colocatedImbalance slowest rank's time over the mean, colocated
 * @param planImbalance the plan's max load over target
 * @param bytesRatio the plan's bytes over the lower bound
 * @param commBoundShare fraction of GPU-layer phases whose transfer outlasted their compute
 * @param gpus GPUs the disaggregated step uses (ranks + servers in a pool, ranks in place)
 */
public record StepEstimate(
    String model,
    int ranks,
    int servers,
    long tokensPerRank,
    double colocatedSeconds,
    double disaggregatedSeconds,
    double colocatedImbalance,
    double planImbalance,
    double bytesRatio,
    double commBoundShare,
    double planMillis,
    int gpus) {

  /** Colocated step time over disaggregated: above 1 means disaggregation is faster. */
  public double speedup() {
    return colocatedSeconds / disaggregatedSeconds;
  }

  /** Speedup per GPU: equal to {@link #speedup()} in place, lower in a pool that adds GPUs. */
  public double speedupPerGpu() {
    return speedup() * ranks / gpus;
  }
}
