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

  Admission(long maxBytes, double maxFlops, double flopsPerSecond) {
    this.maxBytes = maxBytes;
    this.maxFlops = maxFlops;
    this.flopsPerSecond = flopsPerSecond;
  }

  /**
   * Admits the request, or returns why not. The first request is always admitted on an idle server,
   * however large, so that a single request bigger than the budget is not refused forever.
   */
  synchronized ProtocolException tryAcquire(long requestBytes, double requestFlops) {
    boolean idle = bytes == 0 && flops == 0;
    if (!idle && (bytes + requestBytes > maxBytes || flops + requestFlops > maxFlops)) {
      refused++;
      long retryAfterMs = (long) Math.min(5000, Math.max(10, 1000 * flops / flopsPerSecond / 2));
      String what = bytes + requestBytes > maxBytes
          ? bytes + " bytes in flight, limit " + maxBytes
          : String.format("%.3g FLOPs queued, limit %.3g", flops, maxFlops);
      return new ProtocolException(ErrorCode.OVERLOADED, null, "server overloaded: " + what, retryAfterMs, null);
    }
    bytes += requestBytes;
    flops += requestFlops;
    return null;
  }

  synchronized void releaseFlops(double requestFlops) {
    flops = Math.max(0, flops - requestFlops);
  }

  synchronized void releaseBytes(long requestBytes) {
    bytes -= requestBytes;
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
