package io.distca.dispatcher.sim;

/** Where attention servers run relative to trainer ranks. */
public enum Layout {
  /**
   * The paper's setting: every GPU hosts one trainer rank and one attention server and time-shares
   * them (ranks = servers). Colocated and disaggregated use the same GPUs.
   */
  IN_PLACE,
  /**
   * This project's service setting: a separate pool of attention servers beside the trainer GPUs.
   * Disaggregated uses ranks + servers GPUs, so the report also gives the speedup per GPU.
   */
  POOL
}
