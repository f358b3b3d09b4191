package io.distca.server;

import io.distca.observability.CatalogueMeters;
import io.distca.observability.HealthCheck;
import io.distca.observability.ServiceTelemetry;
import io.distca.protocol.transport.WireTraffic;
import io.distca.server.PreparedRequest.BatchStats;
import io.distca.server.backend.BackendMemory;
import io.distca.server.backend.KvSegment;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The attention server's telemetry: its {@link ServerMeters} catalogue on a Prometheus registry,
 * the admin port, and the record calls the server and the rebatcher make where things happen.
 */
final class ServerMetrics implements Rebatcher.BatchListener, AutoCloseable {
  private static final String[] PHASES = {"forward", "backward"};

  private final ServiceTelemetry telemetry;
  private final CatalogueMeters<ServerMeters> meters = new CatalogueMeters<>(ServerMeters.class);
  private final WireTraffic traffic = new WireTraffic();
  private final AtomicLong inflightTasks = new AtomicLong();
  private final long maxBatchQueryTokens;

  ServerMetrics(ServerContext ctx, HealthCheck readiness, HealthCheck liveness) {
    ServiceTelemetry.Options o = new ServiceTelemetry.Options();
    o.component = "attention-server";
    o.commonTags = List.of(Tag.of("server", ctx.serverId));
    o.adminHost = ctx.host;
    o.adminPort = ctx.adminPort;
    o.readiness = readiness;
    o.liveness = liveness;
    this.telemetry = new ServiceTelemetry(o);
    this.maxBatchQueryTokens = ctx.maxBatchQueryTokens;
    meters.bindTo(telemetry.registry());
    meters.bindTraffic(traffic, ServerMeters.WIRE, ServerMeters.CONNECTIONS, ServerMeters.ERRORS);
    meters.gauge(ServerMeters.INFLIGHT_TASKS, inflightTasks, AtomicLong::get);
    meters.gauge(ServerMeters.MEMORY_LIMIT, ctx, c -> c.maxMemoryBytes);
  }

  /** Binds the gauges that read the running server; called once its parts exist. */
  void bindServer(AttentionServer server) {
    meters.gauge(ServerMeters.QUEUED_TASKS, server, AttentionServer::queuedTasks);
    meters.gauge(ServerMeters.QUEUED_WORK, server, AttentionServer::queuedFlops);
    meters.gauge(ServerMeters.INFLIGHT_BYTES, server, AttentionServer::bytesInFlight);
    meters.gauge(ServerMeters.MEMORY, server, AttentionServer::allocatedBytes, "host");
    BackendMemory device = server.backend() instanceof BackendMemory m ? m : null;
    meters.gauge(ServerMeters.MEMORY, server, s -> device == null ? 0 : device.deviceBytes(), "device");
    meters.gauge(ServerMeters.MEMORY, server, s -> device == null ? 0 : device.pinnedHostBytes(), "pinned");
    meters.gauge(ServerMeters.PINNED_POOL, server, s -> s.pinnedStats().poolBytes());
    meters.functionCounter(ServerMeters.PINNED_POOL_REQUESTS, server, s -> s.pinnedStats().poolHits(), "hit");
    meters.functionCounter(ServerMeters.PINNED_POOL_REQUESTS, server, s -> s.pinnedStats().poolMisses(), "miss");
    meters.functionCounter(ServerMeters.TRANSFER, server, s -> s.pinnedStats().directUploadBytes(), "upload", "direct");
    meters.functionCounter(ServerMeters.TRANSFER, server, s -> s.pinnedStats().stagedUploadBytes(), "upload", "staged");
    meters.functionCounter(ServerMeters.TRANSFER, server, s -> s.pinnedStats().directDownloadBytes(), "download", "direct");
    meters.functionCounter(ServerMeters.TRANSFER, server, s -> s.pinnedStats().stagedDownloadBytes(), "download", "staged");
    meters.gauge(ServerMeters.THROUGHPUT, server, AttentionServer::calibratedFlopsPerSecond);
    meters.gauge(ServerMeters.READY, server, s -> s.readinessFailure() == null ? 1 : 0);
    meters.gauge(ServerMeters.DRAINING, server, s -> s.draining() ? 1 : 0);
    meters.gauge(ServerMeters.BACKEND_FAILED, server, s -> s.livenessFailure() == null ? 0 : 1);
    meters.requireAllBound("server");
  }

  WireTraffic traffic() {
    return traffic;
  }

  MeterRegistry registry() {
    return telemetry.registry();
  }

  int adminPort() {
    return telemetry.adminPort();
  }

  void requestAdmitted(PreparedRequest r) {
    inflightTasks.addAndGet(r.slices.size());
  }

  void requestFailed(PreparedRequest r) {
    inflightTasks.addAndGet(-r.slices.size());
  }

  void requestServed(PreparedRequest r, BatchStats stats) {
    inflightTasks.addAndGet(-r.slices.size());
    String phase = phase(r.phase);
    long kvTokens = 0;
    for (KvSegment s : r.segments) {
      kvTokens += s.length();
    }
    meters.counter(ServerMeters.TASKS, phase).increment(r.slices.size());
    meters.counter(ServerMeters.TOKENS, phase, "received").increment(r.queryTokens + kvTokens);
    meters.counter(ServerMeters.TOKENS, phase, "sent")
        .increment(r.phase == Phase.FORWARD ? r.queryTokens : r.queryTokens + kvTokens);
    meters.counter(ServerMeters.ATTENTION, phase).increment(r.flops);
    meters.timer(ServerMeters.REQUEST_QUEUE, phase).record(stats.queueNanos(), TimeUnit.NANOSECONDS);
    meters.timer(ServerMeters.REQUEST_KERNEL, phase).record(stats.computeNanos(), TimeUnit.NANOSECONDS);
  }

  /** The response left (or failed to leave) the socket. */
  void responseWritten(Phase phase, long admittedNanos) {
    meters.timer(ServerMeters.REQUEST_LATENCY, phase(phase)).record(System.nanoTime() - admittedNanos,
        TimeUnit.NANOSECONDS);
  }

  @Override
  public void batchRan(Phase phase, int requests, long queryTokens, long computeNanos) {
    String p = phase(phase);
    meters.timer(ServerMeters.BATCH_KERNEL, p).record(computeNanos, TimeUnit.NANOSECONDS);
    meters.summary(ServerMeters.BATCH_FILL, p).record(Math.min(1.0, (double) queryTokens / maxBatchQueryTokens));
    meters.summary(ServerMeters.BATCH_REQUESTS, p).record(requests);
  }

  private static String phase(Phase p) {
    return PHASES[p.ordinal()];
  }

  @Override
  public void close() {
    telemetry.close();
  }
}
