package io.distca.loadtest.bench;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.transport.MessageServer;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.RequestHandler;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireOptions;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import io.distca.server.ServerMeters;
import io.distca.server.backend.PinnedTransfers;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.netty.channel.EventLoopGroup;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.apache.arrow.memory.BufferAllocator;

/**
 * {@code distca bench server}: an attention server end to end on this host (forward requests over
 * loopback TCP in, O and LSE out; or backward requests, Q, K, V, dO, LSE and delta in, dQ, dK and dV
 * out; several connections with requests in flight), set beside its two rooflines measured in the
 * same run: the backend alone on the same batch (kernel-only time where the backend reports it) and
 * the transport alone (an echo server moving exactly the same request and response bytes over the
 * same connections). Reports the fraction of the slower roofline the server achieves.
 */
public final class ServerBench {
  /** What one run measured; rates are per second. */
  public record Result(
      String backend, boolean backward, int docs, int tokens, long requestBytes, long responseBytes, int connections,
      int inflight,
      double serverRequests, double kernelRequests, double transportRequests, double flopsPerRequest,
      PinnedTransfers.Stats pinned, StageTimes stages) {

    public double rooflineRequests() {
      return Math.min(kernelRequests, transportRequests);
    }

    public double fraction() {
      return serverRequests / rooflineRequests();
    }

    public void print(java.io.PrintStream out) {
      double mb = (requestBytes + responseBytes) / 1e6;
      out.printf(Locale.ROOT, "%s requests: %d documents, %d query tokens, %.1f MB in + %.1f MB out per request;"
              + " %d connections x %d in flight%n",
          backward ? "backward" : "forward", docs, tokens, requestBytes / 1e6, responseBytes / 1e6, connections, inflight);
      out.printf(Locale.ROOT, "%-34s %10s %12s %10s%n", "", "req/s", "TFLOP/s", "GB/s");
      row(out, "server end to end (" + backend + ")", serverRequests, mb);
      row(out, "backend alone (kernel roofline)", kernelRequests, mb);
      row(out, "transport alone (echo roofline)", transportRequests, mb);
      out.printf(Locale.ROOT, "fraction of the slower roofline (%s): %.2f%n",
          kernelRequests < transportRequests ? "kernel" : "transport", fraction());
      out.printf(Locale.ROOT, "pinned path (server end to end): %s; up %.1f MB direct / %.1f MB staged, down %.1f MB direct"
              + " / %.1f MB staged; pool %.1f MB, %d hits, %d misses%n",
          pinned.directUsed() ? "used" : "not used", pinned.directUploadBytes() / 1e6, pinned.stagedUploadBytes() / 1e6,
          pinned.directDownloadBytes() / 1e6, pinned.stagedDownloadBytes() / 1e6, pinned.poolBytes() / 1e6,
          pinned.poolHits(), pinned.poolMisses());
      double roundTripMs = 1000.0 * connections * inflight / serverRequests;
      out.printf(Locale.ROOT, "per request (server end to end, means): client round trip %.1f ms; on the server, admission to"
              + " response written %.1f ms, of which queued %.1f ms and in the backend %.1f ms (%d requests)%n",
          roundTripMs, stages.latencyMs(), stages.queueMs(), stages.backendMs(), stages.requests());
    }

    private void row(java.io.PrintStream out, String what, double reqs, double mb) {
      out.printf(Locale.ROOT, "%-34s %10.2f %12.2f %10.2f%n", what, reqs, reqs * flopsPerRequest / 1e12, reqs * mb / 1e3);
    }
  }

  /** Most idle bytes the echo's and the clients' frame recyclers keep. */
  private static final long IDLE_FRAME_BYTES = 8L << 30;

  private ServerBench() {}

  /**
   * The server's own per-request timers over the measured window (means): admission to response
   * written, the part of it queued for a batch, and the backend time of the batch that carried it.
   * What a client's round trip has beyond the first is receiving the request and the response.
   */
  public record StageTimes(long requests, double latencyMs, double queueMs, double backendMs) {
    static StageTimes between(TimerTotals before, TimerTotals after) {
      long n = after.latencyCount - before.latencyCount;
      long batched = after.queueCount - before.queueCount;
      return new StageTimes(n, mean(after.latencyNanos - before.latencyNanos, n),
          mean(after.queueNanos - before.queueNanos, batched), mean(after.kernelNanos - before.kernelNanos, batched));
    }

    private static double mean(double nanos, long count) {
      return count == 0 ? Double.NaN : nanos / count / 1e6;
    }
  }

  /** Running totals of the server's request timers, all phases. */
  private record TimerTotals(long latencyCount, double latencyNanos, long queueCount, double queueNanos,
      double kernelNanos) {
    static TimerTotals of(MeterRegistry registry) {
      Collection<Timer> latency = timers(registry, ServerMeters.REQUEST_LATENCY);
      Collection<Timer> queue = timers(registry, ServerMeters.REQUEST_QUEUE);
      return new TimerTotals(count(latency), nanos(latency), count(queue), nanos(queue),
          nanos(timers(registry, ServerMeters.REQUEST_KERNEL)));
    }

    private static Collection<Timer> timers(MeterRegistry registry, ServerMeters meter) {
      return registry.find(meter.definition().name()).timers();
    }

    private static long count(Collection<Timer> timers) {
      return timers.stream().mapToLong(Timer::count).sum();
    }

    private static double nanos(Collection<Timer> timers) {
      return timers.stream().mapToDouble(t -> t.totalTime(TimeUnit.NANOSECONDS)).sum();
    }
  }

  /**
   * @param warmup how long each configuration (the server, then the echo) runs with all requests in
   *     flight before it is timed: the server's pinned pool grows to what that many requests hold, and
   *     an echo's buffer pool likewise, before the clock starts
   * @param kernelMillis as in {@link KernelBench}: kernel-only milliseconds from a submit result, or null for
   *     wall time
   */
  public static Result run(ServerContext serverContext, AttentionShape shape, int[] docLengths, boolean backward,
      int connections, int inflight, Duration warmup, Duration duration, BufferAllocator allocator,
      Function<Object, Double> kernelMillis) throws Exception {
    serverContext.host = "127.0.0.1";
    serverContext.port = 0;
    serverContext.dispatcherHost = null;
    try (BenchBatch batch = new BenchBatch(allocator, shape, true, docLengths, 7);
        AttentionServer server = new AttentionServer(serverContext, allocator)) {
      AttentionRequest meta = requestMeta(shape, docLengths);
      long requestBytes = byteSize(requestTensors(batch, backward));
      long responseBytes = byteSize(responseTensors(batch, backward));
      double flops = (backward ? 2.5 : 1) * batch.forwardFlopsFaConvention();

      // backend alone: median kernel time of the same batch (which leaves the batch's O, LSE and
      // delta those of a real forward, for the backward requests to carry)
      KernelBench kb = new KernelBench(server.backend(), allocator, 2, 5, kernelMillis);
      double kernelMs = kb.forwardBackwardMillis(batch)[backward ? 1 : 0];
      double kernelRequests = 1000 / kernelMs;

      PinnedTransfers.Stats[] pinnedBefore = new PinnedTransfers.Stats[1];
      TimerTotals[] timersBefore = new TimerTotals[1];
      double serverRequests = drive(server.port(), serverContext.maxFrameBytes, batch, backward, meta, connections,
          inflight, warmup, duration, allocator,
          () -> {
            pinnedBefore[0] = server.pinnedStats();
            timersBefore[0] = TimerTotals.of(server.meterRegistry());
          });
      PinnedTransfers.Stats pinned = since(pinnedBefore[0], server.pinnedStats());
      StageTimes stages = StageTimes.between(timersBefore[0], TimerTotals.of(server.meterRegistry()));

      // transport alone: an echo server answering with tensors of the response's sizes (views of the
      // batch's); it receives into reused buffers as the server does into its pinned pool
      RecyclingFrameAllocator echoFrames = new RecyclingFrameAllocator(IDLE_FRAME_BYTES);
      RequestHandler echo = (m, responder) -> {
        TensorSet out = new TensorSet(m::close);
        responseTensors(batch, backward).forEach((name, t) -> out.put(name, t.borrow()));
        responder.reply(Message.of(backward ? MessageType.BACKWARD_RESPONSE : MessageType.FORWARD_RESPONSE,
            m.requestId(), new AttentionResponse("bench", 0, "echo", 0, 0, 0, 1), out));
      };
      double transportRequests;
      try (MessageServer echoServer = new MessageServer("echo", "127.0.0.1", 0, serverContext.ioThreads, "",
          serverContext.maxFrameBytes, WireSetup.server(allocator, serverContext.maxFrameBytes, null, echoFrames), echo)) {
        transportRequests = drive(echoServer.port(), serverContext.maxFrameBytes, batch, backward, meta, connections,
            inflight, warmup, duration, allocator, () -> {});
      }
      int tokens = batch.tokens;
      return new Result(server.backend().name(), backward, docLengths.length, tokens, requestBytes, responseBytes,
          connections, inflight, serverRequests, kernelRequests, transportRequests, flops, pinned, stages);
    }
  }

  /** A request's tensors by wire name (docs/protocol.md): q, k, v; backward adds do, lse and delta. */
  private static java.util.Map<String, Tensor> requestTensors(BenchBatch batch, boolean backward) {
    java.util.Map<String, Tensor> m = new java.util.LinkedHashMap<>();
    m.put("q", batch.q);
    m.put("k", batch.k);
    m.put("v", batch.v);
    if (backward) {
      m.put("do", batch.dO);
      m.put("lse", batch.lse);
      m.put("delta", batch.delta);
    }
    return m;
  }

  /** A response's tensors: o and lse, or dq, dk and dv. */
  private static java.util.Map<String, Tensor> responseTensors(BenchBatch batch, boolean backward) {
    return backward ? java.util.Map.of("dq", batch.dq, "dk", batch.dk, "dv", batch.dv)
        : java.util.Map.of("o", batch.o, "lse", batch.lse);
  }

  private static long byteSize(java.util.Map<String, Tensor> tensors) {
    return tensors.values().stream().mapToLong(Tensor::byteSize).sum();
  }

  /** What the measured requests added to the counters (the kernel roofline's batches and the warm-up are left out). */
  private static PinnedTransfers.Stats since(PinnedTransfers.Stats a, PinnedTransfers.Stats b) {
    return new PinnedTransfers.Stats(b.poolBytes(), b.poolHits() - a.poolHits(), b.poolMisses() - a.poolMisses(),
        b.directUploadBytes() - a.directUploadBytes(), b.stagedUploadBytes() - a.stagedUploadBytes(),
        b.directDownloadBytes() - a.directDownloadBytes(), b.stagedDownloadBytes() - a.stagedDownloadBytes());
  }

  private static AttentionRequest requestMeta(AttentionShape shape, int[] docLengths) {
    List<TaskSpec> tasks = new ArrayList<>();
    for (int d = 0; d < docLengths.length; d++) {
      tasks.add(new TaskSpec(d, 0, docLengths[d], d, 0, docLengths[d], true, 0));
    }
    return new AttentionRequest("bench", 0, 0, shape.headsQ(), shape.headsKv(), shape.headDim(),
        shape.dtype().wireName(), shape.scale(), tasks, docLengths.clone());
  }

  /**
   * Requests per second completed by {@code connections} connections keeping {@code inflight} requests
   * each, timed after a warm-up of the same pattern; {@code atMeasurementStart} runs between the two,
   * with nothing in flight. The clients' frames may be as large as the server's ({@code maxFrameBytes}).
   */
  private static double drive(int port, long maxFrameBytes, BenchBatch batch, boolean backward, AttentionRequest meta,
      int connections, int inflight, Duration warmup, Duration duration, BufferAllocator allocator,
      Runnable atMeasurementStart) throws Exception {
    EventLoopGroup group = Transports.group(Math.max(1, Math.min(connections, 4)), "bench-client");
    // the clients, too, receive responses into reused buffers, so that neither configuration is
    // bound by the clients' allocations
    RecyclingFrameAllocator responseFrames = new RecyclingFrameAllocator(IDLE_FRAME_BYTES);
    List<PeerConnection> conns = new ArrayList<>();
    try {
      for (int c = 0; c < connections; c++) {
        conns.add(PeerConnection.connect(group, "127.0.0.1", port, new Hello(1, "trainer", "bench-" + c, ""),
            WireSetup.of(new WireOptions().allocator(allocator).largeFrameAllocator(responseFrames)
                .maxFrameBytes(maxFrameBytes)), Duration.ofSeconds(10))
            .get(20, TimeUnit.SECONDS));
      }
      // one round trip per connection, then the full pattern for the warm-up
      Sender sender = c -> send(c, batch, backward, meta);
      for (PeerConnection c : conns) {
        sender.send(c).get(5, TimeUnit.MINUTES).close();
      }
      if (!warmup.isZero()) {
        keepAllSending(conns, sender, inflight, warmup);
      }
      atMeasurementStart.run();
      long t0 = System.nanoTime();
      long completed = keepAllSending(conns, sender, inflight, duration);
      return completed / ((System.nanoTime() - t0) / 1e9);
    } finally {
      for (PeerConnection c : conns) {
        c.close();
      }
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }
  }

  /** One request of the measured pattern on a connection. */
  private interface Sender {
    CompletableFuture<Message> send(PeerConnection c);
  }

  /** Keeps {@code inflight} requests going on each connection until {@code duration} has passed; returns the completed count once all are back. */
  private static long keepAllSending(List<PeerConnection> conns, Sender sender, int inflight, Duration duration)
      throws Exception {
    AtomicLong completed = new AtomicLong();
    long end = System.nanoTime() + duration.toNanos();
    List<CompletableFuture<Void>> loops = new ArrayList<>();
    for (PeerConnection c : conns) {
      for (int i = 0; i < inflight; i++) {
        CompletableFuture<Void> loop = new CompletableFuture<>();
        loops.add(loop);
        keepSending(c, sender, end, completed, loop);
      }
    }
    CompletableFuture.allOf(loops.toArray(new CompletableFuture<?>[0])).get(duration.toMillis() + 600_000,
        TimeUnit.MILLISECONDS);
    return completed.get();
  }

  private static void keepSending(PeerConnection c, Sender sender, long endNanos, AtomicLong completed,
      CompletableFuture<Void> loop) {
    if (System.nanoTime() >= endNanos) {
      loop.complete(null);
      return;
    }
    sender.send(c).whenComplete((reply, err) -> {
      if (err != null) {
        loop.completeExceptionally(err);
        return;
      }
      reply.close();
      completed.incrementAndGet();
      keepSending(c, sender, endNanos, completed, loop);
    });
  }

  /** The batch's inputs as views: the encoder releases the set after writing, the memory stays ours. */
  private static CompletableFuture<Message> send(PeerConnection c, BenchBatch batch, boolean backward,
      AttentionRequest meta) {
    TensorSet set = new TensorSet();
    requestTensors(batch, backward).forEach((name, t) -> set.put(name, t.borrow()));
    return c.request(Message.of(backward ? MessageType.BACKWARD_REQUEST : MessageType.FORWARD_REQUEST, 0, meta, set));
  }
}
