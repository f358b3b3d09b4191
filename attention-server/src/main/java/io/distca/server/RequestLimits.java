package io.distca.server;

/**
 * Per-request size limits, checked before any work is admitted. Defaults fit a 512K-token
 * micro-batch of a Llama-70B-sized layer split over a few servers.
 */
public record RequestLimits(int maxTasks, long maxQueryTokens, long maxKvTokens, boolean checkFinite) {
  public static final RequestLimits DEFAULT = new RequestLimits(65_536, 1L << 20, 1L << 21, true);
}
