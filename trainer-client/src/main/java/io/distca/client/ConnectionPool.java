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
