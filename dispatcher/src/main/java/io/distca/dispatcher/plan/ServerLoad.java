package io.distca.dispatcher.plan;

/**
 * One server's share of a plan.
 *
 * @param forwardFlops forward attention FLOPs of its tasks (one layer)
 * @param targetFlops its fair share: total FLOPs times its fraction of the total throughput
 * @param bytesIn Q of its tasks plus each document's K/V once (shards of one document share it)
 * @param bytesOut O and LSE of its tasks
 */
public record ServerLoad(
    int server, String serverId, int tasks, double forwardFlops, double targetFlops, long bytesIn, long bytesOut) {

  /** Load relative to target: 1.0 is exactly the fair share. */
  public double relativeLoad() {
    return targetFlops > 0 ? forwardFlops / targetFlops : (forwardFlops > 0 ? Double.POSITIVE_INFINITY : 1.0);
  }

  public long bytes() {
    return bytesIn + bytesOut;
  }
}
