package io.distca.protocol.transport;

/**
 * What a {@link MessageServer} grants a peer before and beyond authentication.
 *
 * @param maxConnectionsPerPeer connections one remote address may hold at once; the connection
 *     over the limit has its first frame answered with ERROR TOO_MANY_CONNECTIONS and is closed
 * @param helloTimeoutMs how long a new connection may take to have its HELLO accepted (TLS
 *     handshake included) before it is answered ERROR UNAUTHENTICATED and closed
 * @param unauthenticatedMaxFrameBytes largest frame accepted before HELLO is accepted, so that a peer
 *     without the token cannot make the server buffer a large frame
 */
public record ConnectionLimits(int maxConnectionsPerPeer, long helloTimeoutMs, long unauthenticatedMaxFrameBytes) {
  /**
   * A trainer holds one connection per server and dispatcher, but a node runs several ranks (eight
   * GPUs, eight trainers, one address) and a load tester runs hundreds of simulated trainers.
   */
  public static final int DEFAULT_MAX_CONNECTIONS_PER_PEER = 256;
  public static final long DEFAULT_HELLO_TIMEOUT_MS = 10_000;
  /** A HELLO is a few hundred bytes; this leaves room for long tokens and names. */
  public static final long DEFAULT_UNAUTHENTICATED_MAX_FRAME_BYTES = 64 << 10;
  public static final ConnectionLimits DEFAULT = new ConnectionLimits(
      DEFAULT_MAX_CONNECTIONS_PER_PEER, DEFAULT_HELLO_TIMEOUT_MS, DEFAULT_UNAUTHENTICATED_MAX_FRAME_BYTES);

  public ConnectionLimits {
    if (maxConnectionsPerPeer < 1) {
      throw new IllegalArgumentException("maxConnectionsPerPeer must be >= 1, got " + maxConnectionsPerPeer);
    }
    if (helloTimeoutMs <= 0) {
      throw new IllegalArgumentException("helloTimeoutMs must be positive, got " + helloTimeoutMs);
    }
    if (unauthenticatedMaxFrameBytes < 4096) {
      throw new IllegalArgumentException("unauthenticatedMaxFrameBytes must be >= 4096 (a HELLO must fit), got "
          + unauthenticatedMaxFrameBytes);
    }
  }

  public ConnectionLimits withMaxConnectionsPerPeer(int max) {
    return new ConnectionLimits(max, helloTimeoutMs, unauthenticatedMaxFrameBytes);
  }

  public ConnectionLimits withHelloTimeoutMs(long timeoutMs) {
    return new ConnectionLimits(maxConnectionsPerPeer, timeoutMs, unauthenticatedMaxFrameBytes);
  }
}
