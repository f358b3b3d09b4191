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
   * A request larger than the whole budget is refused with LIMIT_EXCEEDED, which clients do not
   * retry: it could never be admitted next to others, and admitting it alone would let it hold the
   * server's memory past the budget (the data port's frame limit normally keeps such requests out).
   * Anything smaller is admitted when it fits beside what is in flight, and always on an idle server.
   */
  synchronized ProtocolException tryAcquireBytes(long requestBytes) {
    if (requestBytes > maxBytes) {
      refused++;
      return new ProtocolException(ErrorCode.LIMIT_EXCEEDED, null, "request needs " + requestBytes
          + " bytes of the admission budget (its tensors, twice: request and response), more than the whole budget of "
          + maxBytes + " bytes; split it into smaller requests");
    }
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

  /** Bytes and requests in flight against the limit, for diagnostics. */
  synchronized String describe() {
    return "admitted " + bytes + " of " + maxBytes + " bytes for " + inflightRequests + " requests";
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
