package io.distca.dispatcher.sim;

import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.plan.Planner;

/**
 * The hardware and policy assumptions of a simulated step; every field has a documented default.
 *
 * @param linearFlopsPerSecond achieved throughput of the linear parts (default 400 TFLOP/s: about
 *     40% of an H100's dense BF16 peak, a typical MFU for long-context training)
 * @param networkBytesPerSecond per GPU and direction (default 50 GB/s: one 400 Gb/s NIC per GPU)
 * @param kernels attention throughput by task shape (default {@link KernelThroughputTable#assumedH100()})
 * @param planner the disaggregated plan's planner (default {@link DistcaPlanner})
 * @param planOptions its options (default {@link PlanOptions#defaults()})
 * @param wlbWindowRanks colocated WLB packing re-packs documents among groups of this many
 *     consecutive ranks (default 8); the number of ranks makes it one global window, the strongest
 *     baseline
 * @param wlbTokenSlack colocated WLB packing may give a rank up to {@code (1 + slack)} times the
 *     average tokens (default 0.1; memory bounds it in practice)
 * @param layout in-place (the paper's) or a separate server pool (default in-place)
 */
public record SimulationSettings(
    double linearFlopsPerSecond,
    double networkBytesPerSecond,
    KernelThroughputTable kernels,
    Planner planner,
    PlanOptions planOptions,
    int wlbWindowRanks,
    double wlbTokenSlack,
    Layout layout) {

  public SimulationSettings {
    if (!(linearFlopsPerSecond > 0) || Double.isInfinite(linearFlopsPerSecond)) {
      throw new IllegalArgumentException("linearFlopsPerSecond must be positive and finite, got " + linearFlopsPerSecond);
    }
    if (!(networkBytesPerSecond > 0) || Double.isInfinite(networkBytesPerSecond)) {
      throw new IllegalArgumentException("networkBytesPerSecond must be positive and finite, got " + networkBytesPerSecond);
    }
    if (kernels == null || planner == null || planOptions == null || layout == null) {
      throw new IllegalArgumentException("kernels, planner, planOptions and layout must not be null");
    }
    if (wlbWindowRanks < 1) {
      throw new IllegalArgumentException("wlbWindowRanks must be >= 1, got " + wlbWindowRanks);
    }
    if (!(wlbTokenSlack >= 0) || Double.isInfinite(wlbTokenSlack)) {
      throw new IllegalArgumentException("wlbTokenSlack must be finite and >= 0, got " + wlbTokenSlack);
    }
  }

  public static SimulationSettings defaults() {
    return new SimulationSettings(
        400e12, 50e9, KernelThroughputTable.assumedH100(), new DistcaPlanner(), PlanOptions.defaults(), 8, 0.1,
        Layout.IN_PLACE);
  }

  public SimulationSettings withPlanner(Planner newPlanner, PlanOptions newOptions) {
    return new SimulationSettings(
        linearFlopsPerSecond, networkBytesPerSecond, kernels, newPlanner, newOptions, wlbWindowRanks, wlbTokenSlack, layout);
  }

  public SimulationSettings withHardware(double newLinearFlopsPerSecond, double newNetworkBytesPerSecond, KernelThroughputTable newKernels) {
    return new SimulationSettings(
        newLinearFlopsPerSecond, newNetworkBytesPerSecond, newKernels, planner, planOptions, wlbWindowRanks, wlbTokenSlack, layout);
  }

  public SimulationSettings withPacking(int newWlbWindowRanks, double newWlbTokenSlack, Layout newLayout) {
    return new SimulationSettings(
        linearFlopsPerSecond, networkBytesPerSecond, kernels, planner, planOptions, newWlbWindowRanks,
        newWlbTokenSlack, newLayout);
  }
}
