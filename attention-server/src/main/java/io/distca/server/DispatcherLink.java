package io.distca.server;

import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.HeartbeatOk;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Register;
import io.distca.protocol.message.RegisterOk;
import io.distca.protocol.transport.PeerConnection;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps this server known to the dispatcher: registers, heartbeats at the interval the dispatcher
 * asks for, and registers again whenever the connection drops or the dispatcher has forgotten it
 * (after a dispatcher restart). Never gives up while the server runs.
 */
final class DispatcherLink implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(DispatcherLink.class);
  private static final long MAX_BACKOFF_MS = 2000;

  private final EventLoopGroup group;
  private final String host;
  private final int port;
  private final Hello hello;
  private final Consumer<ChannelPipeline> pipelineSetup;
  private final Supplier<Register> registration;
  private final Supplier<Heartbeat> heartbeat;
  private volatile PeerConnection connection;
  private volatile boolean closed;
  private volatile boolean registered;
  private long backoffMs = 100;

  DispatcherLink(EventLoopGroup group, String host, int port, Hello hello, Consumer<ChannelPipeline> pipelineSetup,
      Supplier<Register> registration, Supplier<Heartbeat> heartbeat) {
    this.group = group;
    this.host = host;
    this.port = port;
    this.hello = hello;
    this.pipelineSetup = pipelineSetup;
    this.registration = registration;
    this.heartbeat = heartbeat;
  }

  boolean registered() {
    return registered;
  }

  void start() {
    connect();
  }

  private void connect() {
    if (closed) {
      return;
    }
    PeerConnection.connect(group, host, port, hello, pipelineSetup, Duration.ofSeconds(3)).whenComplete((c, err) -> {
      if (err != null) {
        retryLater("cannot reach dispatcher " + host + ":" + port + ": " + err.getMessage());
        return;
      }
      connection = c;
      c.channel().closeFuture().addListener(f -> {
        registered = false;
        if (!closed) {
          retryLater("lost the dispatcher connection");
        }
      });
      register(c);
    });
  }

  private void register(PeerConnection c) {
    c.request(Message.of(MessageType.REGISTER, 0, registration.get()), Duration.ofSeconds(5)).whenComplete((reply, err) -> {
      if (err != null) {
        c.close(); // the close listener schedules the retry
        return;
      }
      try {
        RegisterOk ok = reply.meta(RegisterOk.class);
        registered = true;
        backoffMs = 100;
        LOG.info("registered with dispatcher {}:{}", host, port);
        scheduleHeartbeat(c, ok.heartbeatIntervalMs());
      } finally {
        reply.close();
      }
    });
  }

  private void scheduleHeartbeat(PeerConnection c, long intervalMs) {
    group.schedule(() -> {
      if (closed || !c.isActive()) {
        return;
      }
      c.request(Message.of(MessageType.HEARTBEAT, 0, heartbeat.get()), Duration.ofMillis(intervalMs * 3))
          .whenComplete((reply, err) -> {
            if (err != null) {
              c.close();
              return;
            }
            boolean known;
            try {
              known = reply.meta(HeartbeatOk.class).known();
            } finally {
              reply.close();
            }
            if (known) {
              scheduleHeartbeat(c, intervalMs);
            } else {
              LOG.info("dispatcher forgot this server (restarted?): registering again");
              registered = false;
              register(c);
            }
          });
    }, intervalMs, TimeUnit.MILLISECONDS);
  }

  private void retryLater(String why) {
    if (closed) {
      return;
    }
    LOG.info("{}; retrying in {} ms", why, backoffMs);
    long delay = backoffMs;
    backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
    group.schedule(this::connect, delay, TimeUnit.MILLISECONDS);
  }

  /** Sends one heartbeat now (e.g. to announce draining) without waiting for the interval. */
  void heartbeatNow() {
    PeerConnection c = connection;
    if (c != null && c.isActive() && registered) {
      c.request(Message.of(MessageType.HEARTBEAT, 0, heartbeat.get()), Duration.ofSeconds(2))
          .whenComplete((reply, err) -> {
            if (reply != null) {
              reply.close();
            }
          });
    }
  }

  @Override
  public void close() {
    closed = true;
    PeerConnection c = connection;
    if (c != null) {
      c.close();
    }
  }
}
