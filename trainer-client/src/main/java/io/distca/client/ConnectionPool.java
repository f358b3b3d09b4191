package io.distca.client;

import io.distca.protocol.message.Hello;
import io.distca.protocol.transport.PeerConnection;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/** One live connection per peer address, reconnected on demand after a failure. */
final class ConnectionPool implements AutoCloseable {
  private final EventLoopGroup group;
  private final Hello hello;
  private final Consumer<ChannelPipeline> pipelineSetup;
  private final Duration connectTimeout;
  private final long pingIntervalMs;
  private final long pingTimeoutMs;
  private final Map<String, CompletableFuture<PeerConnection>> connections = new ConcurrentHashMap<>();
  private volatile boolean closed;

  /** @param pingIntervalMs 0 disables keep-alive pings (e.g. for the dispatcher link) */
  ConnectionPool(EventLoopGroup group, Hello hello, Consumer<ChannelPipeline> pipelineSetup, Duration connectTimeout,
      long pingIntervalMs, long pingTimeoutMs) {
    this.group = group;
    this.hello = hello;
    this.pipelineSetup = pipelineSetup;
    this.connectTimeout = connectTimeout;
    this.pingIntervalMs = pingIntervalMs;
    this.pingTimeoutMs = pingTimeoutMs;
  }

  /**
   * The largest request frame {@code host:port} said it accepts (HELLO_OK) when this pool last
   * connected to it; 0 when it has not connected yet.
   */
  long advertisedFrameLimit(String host, int port) {
    CompletableFuture<PeerConnection> f = connections.get(host + ":" + port);
    if (f == null || !f.isDone() || f.isCompletedExceptionally()) {
      return 0;
    }
    PeerConnection c = f.join();
    return c.helloOk() == null ? 0 : c.helloOk().maxFrameBytes();
  }

  /** Per peer: connected or not, and requests waiting for an answer (stall diagnostics). */
  String describe() {
    StringBuilder b = new StringBuilder();
    for (var e : connections.entrySet()) {
      CompletableFuture<PeerConnection> f = e.getValue();
      b.append(b.length() == 0 ? "" : ", ").append(e.getKey()).append(' ');
      if (!f.isDone()) {
        b.append("connecting");
      } else if (f.isCompletedExceptionally()) {
        b.append("not connected");
      } else {
        PeerConnection c = f.join();
        b.append(c.isActive() ? "connected" : "closed").append(", ").append(c.pendingRequests()).append(" pending")
            .append(c.channel().isWritable() ? "" : ", not writable");
      }
    }
    return b.length() == 0 ? "none" : b.toString();
  }

  CompletableFuture<PeerConnection> get(String host, int port) {
    if (closed) {
      return CompletableFuture.failedFuture(new IllegalStateException("client is closed"));
    }
    String key = host + ":" + port;
    return connections.compute(key, (k, existing) -> {
      if (existing != null && (!existing.isDone()
          || (!existing.isCompletedExceptionally() && existing.join().isActive()))) {
        return existing;
      }
      CompletableFuture<PeerConnection> f = PeerConnection.connect(group, host, port, hello, pipelineSetup, connectTimeout);
      if (pingIntervalMs > 0) {
        f.thenAccept(c -> c.keepAlive(pingIntervalMs, pingTimeoutMs));
      }
      return f;
    });
  }

  @Override
  public void close() {
    closed = true;
    for (CompletableFuture<PeerConnection> f : connections.values()) {
      f.thenAccept(PeerConnection::close);
    }
    connections.clear();
  }
}
