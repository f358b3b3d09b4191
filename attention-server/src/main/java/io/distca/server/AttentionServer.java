package io.distca.server;

import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.Register;
import io.distca.protocol.transport.ConnectionLimits;
import io.distca.protocol.transport.MessageServer;
import io.distca.protocol.transport.RequestHandler;
import io.distca.protocol.transport.Responder;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.LargeFrameAllocator;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.PreparedRequest.BatchStats;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.Backends;
import io.distca.server.backend.PinnedTransfers;
import io.netty.channel.EventLoopGroup;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.BufferAllocator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An attention server: admits CA-task requests over the wire, validates them, fuses them across
 * requests and clients into backend batches (the {@link Rebatcher}), and answers with O and LSE
 * (forward) or dQ, dK, dV (backward). Stateless between requests: any server can serve any task.
 *
 * <p>Compute overlaps communication: Netty's I/O threads decode the next requests and write the
 * previous responses while the batch thread runs the backend.
 */
public final class AttentionServer implements AutoCloseable, RequestHandler {
  private static final Logger LOG = LoggerFactory.getLogger(AttentionServer.class);

  private final ServerContext ctx;
  private final BufferAllocator allocator;
  private final AttentionBackend backend;
  private final RequestValidator validator;
  private final Rebatcher rebatcher;
  private final MessageServer server;
  private final EventLoopGroup linkGroup;
  private final DispatcherLink link;
  private final double flopsPerSecond;
  private final java.util.List<io.distca.protocol.message.ThroughputPoint> calibration;
  private final java.util.concurrent.ExecutorService admitters;
  private final Admission admission;
  private final ServerMetrics metrics;
  private final AtomicInteger inflight = new AtomicInteger();
  private final AtomicLong tasksServed = new AtomicLong();
  private final AtomicLong flopsServed = new AtomicLong();
  private final AtomicLong errors = new AtomicLong();
  private volatile boolean draining;
  private final AtomicBoolean backendFailureReported = new AtomicBoolean();
  private volatile boolean started;
  private volatile boolean closed;

  public AttentionServer(ServerContext context, BufferAllocator parent) {
    this.ctx = context.conclude();
    this.allocator = parent.newChildAllocator("attention-server-" + ctx.serverId, 0, ctx.maxMemoryBytes);
    AttentionBackend b = null;
    Rebatcher r = null;
    MessageServer s = null;
    EventLoopGroup g = null;
    // first, so that the admin port answers /healthz (and /readyz: not yet) while the backend loads
    this.metrics = new ServerMetrics(ctx, this::readinessFailure, this::livenessFailure);
    try {
      b = ctx.backendFactory != null ? ctx.backendFactory.get()
          : Backends.create(ctx.backend, ctx.computeThreads, ctx.pinnedPoolBytes(), ctx.cudaDevice);
      this.backend = b;
      this.calibration = Calibration.measure(b, allocator);
      this.flopsPerSecond = calibration.get(calibration.size() - 1).flopsPerSecond();
      this.admission = new Admission(ctx.maxInflightBytes, ctx.maxQueuedSeconds * flopsPerSecond, flopsPerSecond);
      PinnedTransfers pinned = ctx.pinnedReceive && b instanceof PinnedTransfers p ? p : null;
      this.validator = new RequestValidator(ctx.limits, pinned);
      this.admitters = java.util.concurrent.Executors.newFixedThreadPool(ctx.ioThreads,
          new io.netty.util.concurrent.DefaultThreadFactory("distca-admit", true));
      Rebatcher.Options rebatch = ctx.rebatchOptions();
      rebatch.listener = metrics;
      r = new Rebatcher(b, rebatch);
      this.rebatcher = r;
      s = new MessageServer("attention-server " + ctx.serverId, ctx.host, ctx.port, ctx.ioThreads, ctx.token,
          ctx.maxRequestFrameBytes(), ConnectionLimits.DEFAULT.withMaxConnectionsPerPeer(ctx.maxConnectionsPerPeer),
          metrics.traffic().counting(WireSetup.server(allocator, ctx.maxFrameBytes, ctx.tls,
              pinned == null ? LargeFrameAllocator.CHANNEL : pinned.frameAllocator())), this);
      this.server = s;
      if (ctx.dispatcherHost != null) {
        g = Transports.group(1, "distca-server-link");
        this.linkGroup = g;
        this.link = new DispatcherLink(g, ctx.dispatcherHost, ctx.dispatcherPort,
            new Hello(1, "server", ctx.serverId, ctx.token), WireSetup.client(allocator, ctx.tls), this::registration,
            this::heartbeat);
        link.start();
      } else {
        this.linkGroup = null;
        this.link = null;
      }
    } catch (RuntimeException e) {
      if (s != null) {
        s.close();
      }
      if (r != null) {
        r.close();
      }
      if (b != null) {
        b.close();
      }
      if (g != null) {
        g.shutdownGracefully(0, 0, TimeUnit.SECONDS);
      }
      allocator.close();
      metrics.close();
      throw e;
    }
    metrics.bindServer(this);
    started = true;
    LOG.info("attention server {} on {}:{} ({} backend on {}, {} transport, calibrated {} GFLOP/s)", ctx.serverId,
        ctx.host, port(), backend.name(), backend.device(), Transports.name(), String.format("%.1f", flopsPerSecond / 1e9));
  }

  public int port() {
    return server.port();
  }

  /** The admin HTTP port (/metrics, /healthz, /readyz), or -1 when {@link ServerContext#adminPort} is -1. */
  public int adminPort() {
    return metrics.adminPort();
  }

  /** This server's meters (its {@link ServerMeters} catalogue, JVM and Netty), as /metrics exports them. */
  public io.micrometer.core.instrument.MeterRegistry meterRegistry() {
    return metrics.registry();
  }

  /** Null while the server should get work; otherwise why not (the admin port's /readyz answer). */
  String readinessFailure() {
    if (closed) {
      return "closed";
    }
    if (!started) {
      return "starting: loading and calibrating the backend";
    }
    String broken = livenessFailure();
    if (broken != null) {
      return broken;
    }
    if (draining) {
      return "draining";
    }
    if (link != null && !link.registered()) {
      return "not registered with the dispatcher " + ctx.dispatcherHost + ":" + ctx.dispatcherPort;
    }
    return null;
  }

  /**
   * Liveness: broken for good once the backend has failed (a GPU context a fault has poisoned
   * recovers only in a new process), so that an orchestrator restarts the server.
   */
  String livenessFailure() {
    String failed = backendFailure();
    return failed == null ? null : "backend failed: " + failed;
  }

  /** The backend's {@link AttentionBackend#failure()}, null while it computes (or before it exists). */
  private String backendFailure() {
    AttentionBackend b = backend;
    return b == null ? null : b.failure();
  }

  int queuedTasks() {
    return rebatcher.queuedTasks();
  }

  double queuedFlops() {
    return admission.flopsQueued();
  }

  public String serverId() {
    return ctx.serverId;
  }

  public AttentionBackend backend() {
    return backend;
  }

  public double calibratedFlopsPerSecond() {
    return flopsPerSecond;
  }

  /** The calibration table measured at start (forward FLOP/s by task size). */
  public java.util.List<io.distca.protocol.message.ThroughputPoint> calibration() {
    return calibration;
  }

  public boolean registered() {
    return link != null && link.registered();
  }

  public boolean draining() {
    return draining;
  }

  public long batches() {
    return rebatcher.batches();
  }

  /** Requests that ran inside a batch together with at least one other request, summed over batches. */
  public long fusedRequests() {
    return rebatcher.fusedRequests();
  }

  public long tasksServed() {
    return tasksServed.get();
  }

  public long errors() {
    return errors.get();
  }

  /** The backend's pinned-transfer counters ({@link PinnedTransfers.Stats#NONE} without a pinned pool). */
  public PinnedTransfers.Stats pinnedStats() {
    return backend instanceof PinnedTransfers p ? p.pinnedStats() : PinnedTransfers.Stats.NONE;
  }

  public long allocatedBytes() {
    return allocator.getAllocatedMemory();
  }

  public long peakAllocatedBytes() {
    return allocator.getPeakMemoryAllocation();
  }

  /** Requests refused with OVERLOADED by admission control. */
  public long refusedOverloaded() {
    return admission.refused();
  }

  public long bytesInFlight() {
    return admission.bytesInFlight();
  }

  /** Requests admitted and not yet answered (queued, in a batch, or being written). */
  public int requestsInFlight() {
    return inflight.get();
  }

  /** Largest request frame this server accepts, as its HELLO_OK tells clients: any such request fits the admission budget. */
  public long maxRequestFrameBytes() {
    return ctx.maxRequestFrameBytes();
  }

  /** One line of state for stall diagnostics: admission, queue, batches, memory, connections. */
  public String diagnostics() {
    return String.format(java.util.Locale.ROOT,
        "%s: %s; requests in flight %d, queued tasks %d, queued %.3g FLOPs, batches %d, tasks served %d, "
            + "refused OVERLOADED %d, errors %d, buffer memory %d of %d bytes (peak %d), connections %d%s",
        ctx.serverId, admission.describe(), inflight.get(), rebatcher.queuedTasks(), admission.flopsQueued(),
        rebatcher.batches(), tasksServed.get(), admission.refused(), errors.get(), allocator.getAllocatedMemory(),
        ctx.maxMemoryBytes, allocator.getPeakMemoryAllocation(), server.connections(), draining ? ", DRAINING" : "");
  }

  private Register registration() {
    return new Register(ctx.serverId, ctx.advertisedHost, ctx.advertisedPort > 0 ? ctx.advertisedPort : port(),
        backend.name(), backend.device(), ctx.maxMemoryBytes, flopsPerSecond, calibration);
  }

  private Heartbeat heartbeat() {
    // a failed backend leaves like a drain: the dispatcher plans no more work here
    String failed = backendFailure();
    if (failed != null) {
      logBackendFailure(failed);
    }
    return new Heartbeat(ctx.serverId, inflight.get(), admission.flopsQueued(), draining || failed != null);
  }

  @Override
  public void handle(Message m, Responder responder) {
    if (m.type() != MessageType.FORWARD_REQUEST && m.type() != MessageType.BACKWARD_REQUEST) {
      m.close();
      throw new ProtocolException(ErrorCode.UNEXPECTED_MESSAGE, null, "an attention server does not serve " + m.type());
    }
    long requestId = m.requestId();
    String failed = draining ? null : backendFailure();
    if (draining || failed != null) {
      m.close();
      errors.incrementAndGet();
      if (failed != null) {
        reportBackendFailure(failed);
      }
      // DRAINING either way: the client sends the work elsewhere, as from a server that is leaving
      throw new ProtocolException(ErrorCode.DRAINING, null,
          "server " + ctx.serverId + (failed == null ? " is draining" : " cannot compute: " + failed), 100, null);
    }
    // responses are never larger than their requests: twice the request covers both until written
    long bytes = 2 * (m.tensors() == null ? 0 : m.tensors().byteSize());
    ProtocolException tooMuch = admission.tryAcquireBytes(bytes);
    if (tooMuch != null) {
      m.close();
      errors.incrementAndGet();
      throw tooMuch;
    }
    // validation reads every input byte (the finiteness scan) and allocates the outputs: keep it off
    // the I/O threads, which must go on reading the next requests at wire speed
    try {
      admitters.execute(() -> {
        try {
          admit(m, responder, bytes);
        } catch (ProtocolException e) {
          admission.releaseBytes(bytes);
          responder.error(requestId, e);
        } catch (RuntimeException | Error e) {
          // every request gets an answer, even when something unexpected breaks
          admission.releaseBytes(bytes);
          LOG.error("admitting request {} failed", requestId, e);
          responder.error(requestId, new ProtocolException(ErrorCode.INTERNAL, null, e.toString()));
        }
      });
    } catch (java.util.concurrent.RejectedExecutionException e) {
      admission.releaseBytes(bytes);
      m.close();
      throw new ProtocolException(ErrorCode.DRAINING, null, "server " + ctx.serverId + " is shutting down", 100, null);
    }
  }

  /** Validates, admits and queues one request whose {@code bytes} are already admitted; runs on the admission pool. */
  private void admit(Message m, Responder responder, long bytes) {
    long requestId = m.requestId();
    PreparedRequest prepared;
    try {
      prepared = validator.prepare(m, allocator);
    } catch (ProtocolException e) {
      // the validator closed the request; an exhausted buffer cap comes as OVERLOADED
      errors.incrementAndGet();
      throw e;
    }
    ProtocolException refused = admission.tryAcquireFlops(prepared.flops);
    if (refused != null) {
      prepared.close();
      errors.incrementAndGet();
      throw refused;
    }
    inflight.incrementAndGet();
    metrics.requestAdmitted(prepared);
    // runs on the thread that finished the batch: the answer goes out first, so that nothing
    // thrown afterwards (a metric, say) can leave the request unanswered or its budget held
    prepared.done.whenComplete((stats, err) -> {
      inflight.decrementAndGet();
      admission.releaseFlops(prepared.flops);
      boolean served = err == null;
      try {
        if (!served) {
          errors.incrementAndGet();
          Throwable c = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
          responder.reply(Message.error(requestId, c instanceof ProtocolException pe ? pe
              : new ProtocolException(ErrorCode.INTERNAL, null, c.toString())), () -> admission.releaseBytes(bytes));
        } else {
          tasksServed.addAndGet(prepared.slices.size());
          flopsServed.addAndGet((long) prepared.flops);
          Phase phase = prepared.phase;
          long admittedNanos = prepared.admittedNanos;
          responder.reply(Message.of(
              prepared.phase == Phase.FORWARD ? MessageType.FORWARD_RESPONSE : MessageType.BACKWARD_RESPONSE,
              requestId, response(prepared, stats), prepared.takeOutputs()), () -> {
                admission.releaseBytes(bytes);
                admission.observeService(System.nanoTime() - admittedNanos);
                metrics.responseWritten(phase, admittedNanos);
              });
        }
        try {
          if (served) {
            metrics.requestServed(prepared, stats);
          } else {
            metrics.requestFailed(prepared);
          }
        } catch (RuntimeException e) {
          LOG.warn("recording metrics of request {} failed", requestId, e);
        }
      } finally {
        prepared.close();
      }
    });
    rebatcher.offer(prepared);
  }

  /** Once: logs the backend's failure and tells the dispatcher now rather than at the next heartbeat. */
  private void reportBackendFailure(String failed) {
    if (logBackendFailure(failed) && link != null) {
      link.heartbeatNow();
    }
  }

  /** Logs the backend's failure the first time it is seen; whether this call was the first. */
  private boolean logBackendFailure(String failed) {
    boolean first = backendFailureReported.compareAndSet(false, true);
    if (first) {
      LOG.error("server {}: backend failed: {}; it takes no more work, and reports itself not ready and not live",
          ctx.serverId, failed);
    }
    return first;
  }

  private AttentionResponse response(PreparedRequest r, BatchStats stats) {
    return new AttentionResponse(r.meta.job(), r.meta.step(), ctx.serverId, r.slices.size(), stats.queueNanos(),
        stats.computeNanos(), stats.fusedRequests());
  }

  /**
   * Graceful drain: readiness goes false (the dispatcher hears "draining" at once and plans no more
   * work here), new requests are refused with DRAINING so clients re-dispatch, and queued work
   * finishes within {@code drainTimeoutMs}.
   */
  public boolean drain() {
    draining = true;
    if (link != null) {
      link.heartbeatNow();
    }
    long until = System.currentTimeMillis() + ctx.drainTimeoutMs;
    while (inflight.get() > 0 && System.currentTimeMillis() < until) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    boolean clean = inflight.get() == 0;
    LOG.info("server {} drained {}", ctx.serverId, clean ? "cleanly" : "with " + inflight.get() + " requests left");
    return clean;
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (link != null) {
      link.close();
      linkGroup.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }
    server.stopAccepting();
    admitters.shutdown();
    try {
      admitters.awaitTermination(ctx.drainTimeoutMs, java.util.concurrent.TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    rebatcher.close();
    server.close();
    metrics.close();
    backend.close();
    allocator.close();
  }
}
