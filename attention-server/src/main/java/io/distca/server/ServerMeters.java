package io.distca.server;

import static io.distca.observability.MeterDefinition.counter;
import static io.distca.observability.MeterDefinition.functionCounter;
import static io.distca.observability.MeterDefinition.gauge;
import static io.distca.observability.MeterDefinition.latencyBuckets;
import static io.distca.observability.MeterDefinition.summary;
import static io.distca.observability.MeterDefinition.timer;

import io.distca.observability.MeterDefinition;
import io.distca.observability.MeterSpec;
import io.distca.observability.TagSpec;
import io.distca.protocol.message.ErrorCode;

/**
 * Every meter an attention server exports. Each carries the common tags {@code component} and
 * {@code server} (the server id); the tags listed here take only the listed values.
 */
public enum ServerMeters implements MeterSpec {
  TASKS(counter("distca.server.tasks", "tasks", "CA-tasks served (a request carries many).", TagSpec.PHASE)),
  TOKENS(counter("distca.server.tokens", "tokens",
      "Token rows received (query rows plus key/value rows) and sent back (O or dQ rows, plus dK/dV rows in backward).",
      TagSpec.PHASE, TagSpec.DIRECTION)),
  ATTENTION(counter("distca.server.attention", "flops",
      "Core-attention FLOPs served, by the cost model (backward counts 2.5x forward).", TagSpec.PHASE)),
  REQUEST_QUEUE(timer("distca.server.request.queue",
      "Time a request waited between admission and the start of the batch that ran it.", latencyBuckets(),
      TagSpec.PHASE)),
  REQUEST_KERNEL(timer("distca.server.request.kernel",
      "Backend time of the fused batch that carried a request.", latencyBuckets(), TagSpec.PHASE)),
  REQUEST_LATENCY(timer("distca.server.request.latency",
      "Admission to response written out: queue, kernel, encode and send of one request.", latencyBuckets(),
      TagSpec.PHASE)),
  BATCH_KERNEL(timer("distca.server.batch.kernel",
      "Backend (kernel) time of one fused batch.", latencyBuckets(), TagSpec.PHASE)),
  BATCH_FILL(summary("distca.server.batch.fill", "ratio",
      "Query tokens of a fused batch over the batch token limit (1 = full).",
      new double[] {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0}, TagSpec.PHASE)),
  BATCH_REQUESTS(summary("distca.server.batch.requests", "requests",
      "Requests fused into one backend call.", new double[] {1, 2, 3, 4, 6, 8, 12, 16, 32, 64}, TagSpec.PHASE)),
  WIRE(functionCounter("distca.server.wire", "bytes",
      "Bytes on the data port's connections, frame headers included.", TagSpec.DIRECTION)),
  CONNECTIONS(functionCounter("distca.server.connections", "connections",
      "Connections accepted on the data port.")),
  ERRORS(functionCounter("distca.server.errors", "errors",
      "ERROR replies sent, by code (overloaded, draining, invalid_shape, ...).", TagSpec.ofEnum("code", ErrorCode.class))),
  INFLIGHT_TASKS(gauge("distca.server.inflight.tasks", "tasks",
      "Tasks admitted and not yet answered (queued or running).")),
  QUEUED_TASKS(gauge("distca.server.queued.tasks", "tasks", "Tasks waiting in the rebatcher for a batch.")),
  QUEUED_WORK(gauge("distca.server.queued.work", "flops",
      "FLOPs admitted and not yet computed: the work ahead of a new request.")),
  INFLIGHT_BYTES(gauge("distca.server.inflight", "bytes",
      "Bytes held for admitted requests and their responses until written (admission control's measure).")),
  MEMORY(gauge("distca.server.memory.used", "bytes",
      "Memory held by pool: host = the server's Arrow allocator (tensors in and out), device = the CUDA backend's"
          + " device arenas, pinned = its pinned staging arenas and pinned buffer pool (0 on the CPU backend).", TagSpec.of("pool", "host", "device", "pinned"))),
  PINNED_POOL(gauge("distca.server.pinned.pool", "bytes",
      "Page-locked host buffers of the CUDA backend's pinned pool (received frames and outputs the GPU copies"
          + " directly), leased and idle; 0 without the pool.")),
  PINNED_POOL_REQUESTS(functionCounter("distca.server.pinned.pool.requests", "requests",
      "Buffer requests to the pinned pool: hit = served by a pooled buffer, miss = fell back to ordinary memory"
          + " (pool full, or pinned allocation failed); first allocations count as neither.",
      TagSpec.of("result", "hit", "miss"))),
  TRANSFER(functionCounter("distca.server.transfer", "bytes",
      "Tensor bytes the CUDA backend moved between host and GPU: direct = one DMA copy from or to a pinned tensor,"
          + " staged = through a host copy into pinned staging.",
      TagSpec.of("direction", "upload", "download"), TagSpec.of("path", "direct", "staged"))),
  MEMORY_LIMIT(gauge("distca.server.memory.limit", "bytes", "Cap of the server's host buffer allocator.")),
  THROUGHPUT(gauge("distca.server.calibrated.throughput", "flops.per.second",
      "Forward FLOP/s the backend measured at start; the dispatcher weighs servers by it.")),
  READY(gauge("distca.server.ready", null,
      "1 while the server takes work (registered, backend loaded and working, not draining), else 0.")),
  DRAINING(gauge("distca.server.draining", null, "1 once the server drains (SIGTERM), else 0.")),
  BACKEND_FAILED(gauge("distca.server.backend.failed", null,
      "1 once the backend has failed for good (a lost GPU context): the server takes no more work and fails"
          + " /readyz and /healthz until restarted; else 0."));

  private final MeterDefinition definition;

  ServerMeters(MeterDefinition definition) {
    this.definition = definition;
  }

  @Override
  public MeterDefinition definition() {
    return definition;
  }
}
