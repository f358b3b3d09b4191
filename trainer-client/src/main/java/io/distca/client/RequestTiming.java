package io.distca.client;

/**
 * One request (a nano-batch attempt) of a forward or backward call, split into phases. Client-side
 * phases are measured here; {@code queueNanos} and {@code computeNanos} are what the server reported
 * in its response (durations, so no clock agreement is needed). A failed attempt has an
 * {@code error} and only the phases it reached.
 *
 * @param server         the plan's id of the server asked
 * @param attempt        0 for the first try of the nano-batch, then 1, 2, ... for retries
 * @param tasks          CA-tasks in the request
 * @param flops          FLOPs of the request's tasks in this pass under the cost model (backward: 2.5x forward)
 * @param bytesSent      tensor bytes of the request
 * @param bytesReceived  tensor bytes of the response
 * @param sendNanos      gathering the request's rows into its tensors and handing the frame to the transport
 * @param roundTripNanos from handing the frame over until the response was decoded
 * @param queueNanos     time the request waited in the server's rebatcher queue
 * @param computeNanos   time of the backend call that ran it (shared with the requests fused with it)
 * @param fusedWith      requests in that backend call, this one included
 * @param mergeNanos     placing the results into the caller's layout (copy, LSE merge, dK/dV sums)
 * @param error          why the attempt failed; null when it was answered and taken
 */
public record RequestTiming(
    String server, int attempt, int tasks, double flops, long bytesSent, long bytesReceived,
    long sendNanos, long roundTripNanos, long queueNanos, long computeNanos, int fusedWith, long mergeNanos,
    String error) {

  public boolean answered() {
    return error == null;
  }

  /**
   * Round trip less the server's queue and compute: transfer both ways, codecs, validation and
   * waiting for I/O threads. Never negative (the server's numbers come from another clock source).
   */
  public long receiveNanos() {
    return Math.max(0, roundTripNanos - queueNanos - computeNanos);
  }

  /** This request's share of its backend call: compute time divided among the requests fused into it. */
  public double computeShareNanos() {
    return fusedWith > 0 ? (double) computeNanos / fusedWith : computeNanos;
  }
}
