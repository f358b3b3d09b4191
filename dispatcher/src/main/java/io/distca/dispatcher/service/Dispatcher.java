package io.distca.dispatcher.service;

import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.GreedyPlanner;
import io.distca.dispatcher.plan.Planner;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.HeartbeatOk;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.Register;
import io.distca.protocol.message.RegisterOk;
import io.distca.protocol.transport.ConnectionLimits;
import io.distca.protocol.transport.MessageServer;
import io.distca.protocol.transport.RequestHandler;
import io.distca.protocol.transport.Responder;
import io.distca.protocol.wire.WireSetup;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The control plane: server membership (REGISTER, HEARTBEAT, drain, death) and per-step plans
 * (PLAN_REQUEST). It holds no state that servers cannot rebuild by registering again, so it can be
 * restarted under a running job.
 */
public final class Dispatcher implements AutoCloseable, RequestHandler {
  private static final Logger LOG = LoggerFactory.getLogger(Dispatcher.class);

  private final DispatcherContext ctx;
  private final Membership membership;
  private final StepCoordinator steps;
  private final ScheduledExecutorService timer;
  private final BufferAllocator allocator;
  private final MessageServer server;
  private final DispatcherMetrics metrics;
  private volatile boolean closed;

  public Dispatcher(DispatcherContext context, BufferAllocator parent) {
    this.ctx = context.conclude();
    this.allocator = parent.newChildAllocator("dispatcher", 0, Long.MAX_VALUE);
    // ready while it accepts registrations and plan requests: servers must reach it before any is live
    this.metrics = new DispatcherMetrics(ctx, () -> closed ? "closed" : null);
    this.membership = new Membership(ctx.deadAfterMs, System::currentTimeMillis);
    this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "distca-dispatcher-timer");
      t.setDaemon(true);
      return t;
    });
    Planner planner = ctx.planner.equals("greedy") ? new GreedyPlanner() : new DistcaPlanner();
    this.steps = new StepCoordinator(planner, ctx.planOptions, membership::live,
        id -> (long) (ctx.byteBudgetFraction * membership.memoryBytes(id)), timer, ctx.gatherTimeoutMs, metrics);
    metrics.bindDispatcher(membership, steps);
    timer.scheduleWithFixedDelay(this::sweep, ctx.heartbeatIntervalMs, ctx.heartbeatIntervalMs / 2 + 1,
        TimeUnit.MILLISECONDS);
    try {
      this.server = new MessageServer("dispatcher", ctx.host, ctx.port, ctx.ioThreads, ctx.token, ctx.maxFrameBytes,
          ConnectionLimits.DEFAULT.withMaxConnectionsPerPeer(ctx.maxConnectionsPerPeer),
          metrics.traffic().counting(WireSetup.server(allocator, ctx.maxFrameBytes, ctx.tls)), this);
    } catch (RuntimeException e) {
      timer.shutdownNow();
      metrics.close();
      allocator.close();
      throw e;
    }
    LOG.info("dispatcher listening on {}:{} (planner {})", ctx.host, port(), ctx.planner);
  }

  public int port() {
    return server.port();
  }

  public Membership membership() {
    return membership;
  }

  /** The admin HTTP port (/metrics, /healthz, /readyz), or -1 when {@link DispatcherContext#adminPort} is -1. */
  public int adminPort() {
    return metrics.adminPort();
  }

  /** The dispatcher's meters ({@link DispatcherMeters}, JVM and Netty), as /metrics exports them. */
  public io.micrometer.core.instrument.MeterRegistry meterRegistry() {
    return metrics.registry();
  }

  private void sweep() {
    List<String> died = membership.sweep();
    if (!died.isEmpty()) {
      metrics.died(died.size());
    }
    for (String id : died) {
      LOG.warn("server {} missed its heartbeats: declared dead, it gets no more work", id);
    }
  }

  @Override
  public void handle(Message m, Responder responder) {
    try (m) {
      switch (m.type()) {
        case REGISTER: {
          Register r = m.meta(Register.class);
          if (r.serverId() == null || r.serverId().isEmpty() || r.host() == null || r.port() <= 0 || r.port() > 65535) {
            throw new ProtocolException(ErrorCode.INVALID_METADATA, "server_id",
                "REGISTER needs a server id, a host and a TCP port, got " + r);
          }
          membership.register(r);
          metrics.registered();
          LOG.info("server {} registered at {}:{} ({} {}, {} GFLOP/s)", r.serverId(), r.host(), r.port(), r.backend(),
              r.device(), String.format("%.1f", r.flopsPerSecond() / 1e9));
          responder.reply(Message.of(MessageType.REGISTER_OK, m.requestId(),
              new RegisterOk(ctx.heartbeatIntervalMs, ctx.deadAfterMs)));
          return;
        }
        case HEARTBEAT: {
          boolean known = membership.heartbeat(m.meta(Heartbeat.class));
          metrics.heartbeat(known);
          responder.reply(Message.of(MessageType.HEARTBEAT_OK, m.requestId(), new HeartbeatOk(known)));
          return;
        }
        case PLAN_REQUEST: {
          long id = m.requestId();
          metrics.planRequested();
          steps.submit(m.meta(PlanRequest.class)).whenComplete((plan, err) -> {
            if (err == null) {
              responder.reply(Message.of(MessageType.PLAN_RESPONSE, id, plan));
            } else {
              Throwable c = err.getCause() != null && !(err instanceof ProtocolException) ? err.getCause() : err;
              responder.error(id, c instanceof ProtocolException pe ? pe
                  : new ProtocolException(ErrorCode.INTERNAL, null, "planning failed: " + c));
            }
          });
          return;
        }
        default:
          throw new ProtocolException(ErrorCode.UNEXPECTED_MESSAGE, null, "the dispatcher does not serve " + m.type());
      }
    }
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    server.close();
    timer.shutdownNow();
    metrics.close();
    allocator.close();
  }
}
