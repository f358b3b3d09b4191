package io.distca.server;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;

/**
 * Bounds what the server holds: bytes of admitted requests and their responses (from admission
 * until the response is written out), and FLOPs waiting for or in the backend. A request that would
 * cross either bound is refused with OVERLOADED and a retry-after estimated from the queued work,
 * so an overloaded server degrades into fast refusals instead of growing queues and falling over.
 * Back-pressure is a return value, not an exception thrown through the pipeline.
 */
final class Admission {
  private final long maxBytes;
  private final double maxFlops;
  private final double flopsPerSecond;
  private long bytes;
  private double flops;
  private long refused;
  /** Smoothed seconds from admission to response written, for the retry-after estimate. */
  private double serviceSeconds = 0.01;
  private int inflightRequests;

  Admission(long maxBytes, double maxFlops, double flopsPerSecond) {
    this.maxBytes = maxBytes;
    this.maxFlops = maxFlops;
    this.flopsPerSecond = flopsPerSecond;
  }

  /**
   * Admits a request's bytes, or returns why not; called on the I/O thread as soon as a request is
   * decoded, so that a refused request's memory is released before anything else is done with it.
   * The first request is always admitted on an idle server, however large, so that a request bigger
   * than the budget is not refused forever.
   */
  synchronized ProtocolException tryAcquireBytes(long requestBytes) {
    if (bytes > 0 && bytes + requestBytes > maxBytes) {
      refused++;
      return overloaded(bytes + " bytes in flight, limit " + maxBytes);
    }
    bytes += requestBytes;
    inflightRequests++;
    return null;
  }

  /** Admits a validated request's FLOPs into the queue, or returns why not. */
  synchronized ProtocolException tryAcquireFlops(double requestFlops) {
    if (flops > 0 && flops + requestFlops > maxFlops) {
      refused++;
      return overloaded(String.format("%.3g FLOPs queued, limit %.3g", flops, maxFlops));
    }
    flops += requestFlops;
    return null;
  }

  private ProtocolException overloaded(String what) {
    // about when the work in flight will have drained: queued FLOPs at the calibrated rate, or the
    // requests in flight at the observed service time, whichever says later
    double drainSeconds = Math.max(flops / flopsPerSecond, inflightRequests * serviceSeconds);
    long retryAfterMs = (long) Math.min(5000, Math.max(10, 1000 * drainSeconds));
    return new ProtocolException(ErrorCode.OVERLOADED, null, "server overloaded: " + what, retryAfterMs, null);
  }

  synchronized void releaseFlops(double requestFlops) {
    flops = Math.max(0, flops - requestFlops);
  }

  synchronized void releaseBytes(long requestBytes) {
    bytes -= requestBytes;
    inflightRequests--;
  }

  /** Feeds the retry-after estimate with one request's time from admission to response written. */
  synchronized void observeService(long nanos) {
    serviceSeconds = 0.8 * serviceSeconds + 0.2 * (nanos / 1e9);
  }

  synchronized long bytesInFlight() {
    return bytes;
  }

  synchronized double flopsQueued() {
    return flops;
  }

  synchronized long refused() {
    return refused;
  }
}
