package io.distca.client;

import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.Plan;
import io.distca.dispatcher.plan.PlanInput;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.plan.ServerCapacity;
import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.PlanResponse;
import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.ServerInfo;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.transport.ConnectionLostException;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.micrometer.core.instrument.Metrics;
import io.netty.channel.EventLoopGroup;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.apache.arrow.memory.BufferAllocator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The trainer-side library: forward and backward core attention of a micro-batch, served by the
 * attention-server pool.
 *
 * <p>A call gets the step's plan from the dispatcher (once per step; every layer reuses it), turns
 * it into CA-tasks, groups each server's tasks into two nano-batches (ping-pong: the second is on the
 * wire while the first computes), ships them, and assembles the results in the caller's layout. A
 * nano-batch that fails (connection lost, server overloaded or draining, timeout) is sent again to
 * another server, within the call's deadline; each task's first result wins.
 *
 * <p>When the dispatcher cannot be reached the client plans locally with the dispatcher's default
 * scheduler (DistCA's communication-aware greedy) over the
 * servers of its last plan, so training continues through a dispatcher restart.
 */
public final class DistcaClient implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(DistcaClient.class);
  private static final int PLAN_CACHE = 4;

  private final ClientContext ctx;
  private final BufferAllocator allocator;
  private final EventLoopGroup group;
  private final ConnectionPool servers;
  private final ConnectionPool dispatcher;
  private final Map<PlanKey, CompletableFuture<PlanResponse>> plans = new LinkedHashMap<>();
  private volatile List<ServerInfo> lastServers = List.of();
  private final AtomicLong retries = new AtomicLong();
  private final AtomicLong localPlans = new AtomicLong();
  private final ClientMetrics metrics;
  private final AtomicLong droppedResults = new AtomicLong();
  /** serverId -> time (ms) until which this client sends it nothing. */
  private final Map<String, Long> quarantine = new java.util.concurrent.ConcurrentHashMap<>();
  private final AtomicLong requestsStarted = new AtomicLong();
  private final AtomicLong requestsAnswered = new AtomicLong();
  private final AtomicLong requestsFailed = new AtomicLong();
  private final AtomicLong tasksSent = new AtomicLong();
  private final AtomicLong tasksAnswered = new AtomicLong();
  private final AtomicLong tasksFailed = new AtomicLong();
  /** Calls launched and not yet ended, for {@link #diagnostics()}. */
  private final java.util.Set<Call> active = java.util.concurrent.ConcurrentHashMap.newKeySet();

  private record PlanKey(long step, int[] docs, AttentionShape shape, boolean causal) {
    @Override
    public boolean equals(Object o) {
      return o instanceof PlanKey k && k.step == step && Arrays.equals(k.docs, docs) && k.shape.equals(shape)
          && k.causal == causal;
    }

    @Override
    public int hashCode() {
      return Objects.hash(step, Arrays.hashCode(docs), shape, causal);
    }
  }

  public DistcaClient(ClientContext context, BufferAllocator parent) {
    this.ctx = context.conclude();
    this.metrics = new ClientMetrics(ctx.meterRegistry != null ? ctx.meterRegistry : Metrics.globalRegistry);
    this.allocator = parent.newChildAllocator("distca-client-" + ctx.rank, 0, Long.MAX_VALUE);
    this.group = Transports.group(ctx.ioThreads, "distca-client-io");
    var setup = ctx.pipelineSetup != null ? ctx.pipelineSetup : WireSetup.client(allocator, ctx.tls, ctx.maxFrameBytes);
    Hello hello = new Hello(1, "trainer", ctx.clientName + "-" + ctx.rank, ctx.token);
    this.servers = new ConnectionPool(group, hello, setup, ctx.connectTimeout, ctx.pingIntervalMs, ctx.pingTimeoutMs);
    this.dispatcher = new ConnectionPool(group, hello, setup, ctx.connectTimeout, 0, 0);
  }

  public long retries() {
    return retries.get();
  }

  public long localPlans() {
    return localPlans.get();
  }

  /** Task results dropped because the task already had its result (a retried request answered twice). */
  public long droppedResults() {
    return droppedResults.get();
  }

  /** Request attempts and their outcomes so far, over all calls of this client. */
  public RequestCounts requestCounts() {
    return new RequestCounts(requestsStarted.get(), requestsAnswered.get(), requestsFailed.get(), tasksSent.get(),
        tasksAnswered.get(), tasksFailed.get());
  }

  /**
   * What this client is doing now, for stall diagnostics: request counts, retries, quarantined
   * servers, connections with their pending requests, and every call in progress.
   */
  public String diagnostics() {
    long now = System.currentTimeMillis();
    StringBuilder b = new StringBuilder();
    b.append("client ").append(ctx.clientName).append('-').append(ctx.rank).append(": ").append(requestCounts())
        .append(", retries ").append(retries.get()).append(", local plans ").append(localPlans.get());
    StringBuilder q = new StringBuilder();
    quarantine.forEach((server, until) -> {
      if (until > now) {
        q.append(q.length() == 0 ? "" : ", ").append(server).append(" for ").append(until - now).append(" ms");
      }
    });
    b.append("\n  quarantined: ").append(q.length() == 0 ? "none" : q);
    b.append("\n  server connections: ").append(servers.describe());
    b.append("\n  dispatcher connection: ").append(dispatcher.describe());
    if (active.isEmpty()) {
      b.append("\n  no call in progress");
    }
    for (Call c : active) {
      b.append("\n  ").append(c.describe(now));
    }
    return b.toString();
  }

  /** The servers of the latest plan, with the throughput each measured at start (empty before the first plan). */
  public List<ServerInfo> knownServers() {
    return lastServers;
  }

  /** Forward core attention: O and LSE of every token of {@code batch}. */
  public CompletableFuture<ForwardResult> forward(long step, MicroBatch batch) {
    return observed("forward", run(step, batch, null).thenApply(c -> c.assembler.finishForward(c.stats())),
        ForwardResult::stats);
  }

  /** Backward core attention: dQ, dK, dV of every token of {@code input.batch()}. */
  public CompletableFuture<BackwardResult> backward(long step, BackwardInput input) {
    return observed("backward", run(step, input.batch(), input).thenApply(c -> c.assembler.finishBackward(c.stats())),
        BackwardResult::stats);
  }

  private <R> CompletableFuture<R> observed(String phase, CompletableFuture<R> call, Function<R, StepStats> stats) {
    long start = System.nanoTime();
    return call.whenComplete((r, err) -> {
      if (err == null) {
        metrics.callSucceeded(phase, stats.apply(r));
      } else {
        metrics.callFailed(phase, System.nanoTime() - start);
      }
    });
  }

  private CompletableFuture<Call> run(long step, MicroBatch mb, BackwardInput bwd) {
    long start = System.nanoTime();
    long deadline = System.currentTimeMillis() + ctx.stepTimeout.toMillis();
    return plan(step, mb).thenCompose(plan -> connected(plan).thenApply(ignored -> plan)).thenCompose(plan -> {
      Call call = new Call(step, mb, bwd, plan, deadline, start, frameLimit(plan));
      call.planWaitNanos = System.nanoTime() - start;
      call.launch();
      return call.result;
    });
  }

  /**
   * Connects to the plan's servers that are not quarantined (at once when already connected), so
   * that each has told its request frame limit before the call cuts its requests; a server that
   * cannot be reached is left to the call's retries.
   */
  private CompletableFuture<Void> connected(PlanResponse plan) {
    long now = System.currentTimeMillis();
    List<CompletableFuture<?>> all = new ArrayList<>();
    for (ServerInfo s : plan.servers()) {
      Long until = quarantine.get(s.serverId());
      if (until == null || until < now) {
        all.add(servers.get(s.host(), s.port()).handle((c, e) -> null));
      }
    }
    return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new));
  }

  /** The largest request frame for a call over {@code plan}: this client's limit and every connected server's. */
  private long frameLimit(PlanResponse plan) {
    long limit = ctx.maxFrameBytes;
    for (ServerInfo s : plan.servers()) {
      long advertised = servers.advertisedFrameLimit(s.host(), s.port());
      if (advertised > 0) {
        limit = Math.min(limit, advertised);
      }
    }
    return limit;
  }

  // ---------------------------------------------------------------- planning

  private CompletableFuture<PlanResponse> plan(long step, MicroBatch mb) {
    PlanKey key = new PlanKey(step, mb.docLengths().clone(), mb.shape(), mb.causal());
    synchronized (plans) {
      CompletableFuture<PlanResponse> cached = plans.get(key);
      if (cached != null && !cached.isCompletedExceptionally()) {
        return cached;
      }
      CompletableFuture<PlanResponse> f = requestPlan(step, mb);
      plans.put(key, f);
      while (plans.size() > PLAN_CACHE) {
        plans.remove(plans.keySet().iterator().next());
      }
      return f;
    }
  }

  private CompletableFuture<PlanResponse> requestPlan(long step, MicroBatch mb) {
    AttentionShape s = mb.shape();
    PlanRequest req = new PlanRequest(ctx.job, step, ctx.rank, ctx.worldSize, s.headsQ(), s.headsKv(), s.headDim(),
        s.dtype().wireName(), mb.causal(), mb.docLengths(), ctx.shardTokens);
    return dispatcher.get(ctx.dispatcherHost, ctx.dispatcherPort)
        .thenCompose(c -> c.request(Message.of(MessageType.PLAN_REQUEST, 0, req), ctx.stepTimeout))
        .handle((reply, err) -> {
          if (err == null) {
            try {
              PlanResponse plan = reply.meta(PlanResponse.class);
              if (!plan.servers().isEmpty()) {
                lastServers = plan.servers();
              }
              return plan;
            } finally {
              reply.close();
            }
          }
          Throwable cause = unwrap(err);
          // a dispatcher that just restarted answers NO_SERVERS until the servers have registered
          // again: the servers of the last plan are still the best guess, as when it is away
          boolean dispatcherDown = cause instanceof ConnectionLostException || cause instanceof TimeoutException
              || (cause instanceof ProtocolException pe && pe.code() == ErrorCode.NO_SERVERS);
          if (dispatcherDown && !lastServers.isEmpty()) {
            LOG.warn("dispatcher unreachable ({}); planning step {} locally over {} known servers", cause.getMessage(),
                step, lastServers.size());
            localPlans.incrementAndGet();
            metrics.plannedLocally();
            return localPlan(step, mb, lastServers);
          }
          throw new CompletionException(cause);
        });
  }

  /**
   * The dispatcher's default scheduler over this rank's documents alone, for when the dispatcher is
   * away: every rank balances its own share over all known servers, so the pool stays evenly loaded.
   */
  private PlanResponse localPlan(long step, MicroBatch mb, List<ServerInfo> known) {
    long t0 = System.nanoTime();
    List<ServerCapacity> caps = new ArrayList<>();
    for (ServerInfo s : known) {
      caps.add(new ServerCapacity(s.serverId(), s.flopsPerSecond() > 0 ? s.flopsPerSecond() : 1.0, 0));
    }
    PlanOptions options = PlanOptions.defaults().withShardTokens(PlanOptions.DEFAULT_MIN_SHARD_TOKENS, ctx.shardTokens);
    Plan plan = new DistcaPlanner().plan(new PlanInput(mb.shape(), mb.causal(), List.of(mb.docLengths()), caps, options));
    return new PlanResponse(ctx.job, step, ctx.rank, known, plan.tasksOf(0), plan.imbalance(), System.nanoTime() - t0);
  }

  // ---------------------------------------------------------------- one forward or backward call

  private final class Call {
    final long step;
    final MicroBatch mb;
    final BackwardInput bwd;
    final PlanResponse plan;
    final long deadlineEpochMs;
    final long startNanos;
    /** Largest request frame of this call (see {@link DistcaClient#frameLimit}). */
    final long frameLimit;
    final int[] cu;
    final List<ClientTask> tasks = new ArrayList<>();
    final ResultAssembler assembler;
    final CompletableFuture<Call> result = new CompletableFuture<>();
    final AtomicInteger outstanding = new AtomicInteger();
    final AtomicLong bytesSent = new AtomicLong();
    final AtomicLong bytesReceived = new AtomicLong();
    final AtomicInteger callRetries = new AtomicInteger();
    /** Plan servers that failed a request of this call: retries go elsewhere first. */
    final java.util.Set<Integer> suspects = java.util.concurrent.ConcurrentHashMap.newKeySet();
    final java.util.Queue<RequestTiming> timings = new java.util.concurrent.ConcurrentLinkedQueue<>();
    int requests;
    double flops;
    long planWaitNanos;

    Call(long step, MicroBatch mb, BackwardInput bwd, PlanResponse plan, long deadlineEpochMs, long startNanos,
        long frameLimit) {
      this.step = step;
      this.frameLimit = frameLimit;
      this.mb = mb;
      this.bwd = bwd;
      this.plan = plan;
      this.deadlineEpochMs = deadlineEpochMs;
      this.startNanos = startNanos;
      this.cu = mb.cuSeqlens();
      long id = 0;
      for (PlannedTask t : plan.tasks()) {
        checkTask(t);
        for (int[] piece : pieces(t)) {
          tasks.add(new ClientTask(id++, t.doc(), piece[0], piece[1], t.kvStart(), piece[2], t.server()));
        }
      }
      this.assembler = new ResultAssembler(mb.shape(), bwd != null, tasks, cu, allocator, droppedResults);
    }

    private void checkTask(PlannedTask t) {
      int[] docs = mb.docLengths();
      if (t.doc() < 0 || t.doc() >= docs.length || t.qStart() < 0 || t.qEnd() > docs[t.doc()] || t.qStart() > t.qEnd()
          || t.kvStart() < 0 || t.kvEnd() > docs[t.doc()] || t.kvStart() > t.kvEnd()
          || t.server() < 0 || t.server() >= plan.servers().size()) {
        throw new IllegalStateException("plan for step " + step + " has an invalid task " + t);
      }
    }

    /**
     * A planned task as query-row pieces {qStart, qEnd, kvEnd} whose requests fit {@link #frameLimit}:
     * the task itself when it fits (almost always), else consecutive query ranges, each with the keys
     * its rows can see (causal: up to its last row), so that every row is computed exactly as the whole
     * task would. A task whose keys alone exceed the limit cannot be cut this way: a typed error.
     */
    private List<int[]> pieces(PlannedTask t) {
      long budget = frameLimit - NanoBatch.frameOverhead(1);
      if (NanoBatch.tensorBytes(mb.shape(), bwd != null, t.qEnd() - t.qStart(), t.kvEnd() - t.kvStart()) <= budget) {
        return List.<int[]>of(new int[] {t.qStart(), t.qEnd(), t.kvEnd()});
      }
      List<int[]> pieces = new ArrayList<>();
      int a = t.qStart();
      while (a < t.qEnd()) {
        if (pieceBytes(t, a, a + 1) > budget) {
          throw new DistcaException("step " + step + " of job " + ctx.job + ": a query row of document " + t.doc()
              + " needs " + (t.kvEnd() - t.kvStart()) + " keys, " + pieceBytes(t, a, a + 1)
              + " bytes in one request, above the request frame limit of " + frameLimit + " bytes (client "
              + ctx.maxFrameBytes + ", servers' HELLO_OK): raise the limits (ClientContext.maxFrameBytes, the servers' "
              + "maxFrameBytes and memory) or use shorter documents",
              new ProtocolException(ErrorCode.LIMIT_EXCEEDED, "max_frame_bytes", "request frame limit " + frameLimit));
        }
        int lo = a + 1;
        int hi = t.qEnd();
        while (lo < hi) { // the largest end whose piece fits
          int mid = (int) (((long) lo + hi + 1) >>> 1);
          if (pieceBytes(t, a, mid) <= budget) {
            lo = mid;
          } else {
            hi = mid - 1;
          }
        }
        pieces.add(new int[] {a, lo, pieceKvEnd(t, lo)});
        a = lo;
      }
      return pieces;
    }

    /** Keys of a piece ending at query row {@code end}: causal rows see keys up to their own position. */
    private int pieceKvEnd(PlannedTask t, int end) {
      return mb.causal() ? Math.max(t.kvStart(), Math.min(t.kvEnd(), end)) : t.kvEnd();
    }

    private long pieceBytes(PlannedTask t, int from, int to) {
      return NanoBatch.tensorBytes(mb.shape(), bwd != null, to - from, pieceKvEnd(t, to) - t.kvStart());
    }

    /**
     * Groups of {@code taskIdx} (in order) whose requests fit {@code limit}; tasks of one document
     * in a group share their keys (KV dedup), as in {@link NanoBatch}. Each task fits on its own.
     */
    private List<List<Integer>> fitFrames(List<Integer> taskIdx, long limit) {
      List<List<Integer>> groups = new ArrayList<>();
      List<Integer> group = new ArrayList<>();
      Map<Integer, int[]> kv = new java.util.HashMap<>();
      long queryRows = 0;
      long keyRows = 0;
      for (int i : taskIdx) {
        ClientTask t = tasks.get(i);
        int[] old = kv.get(t.doc());
        int[] merged = old == null ? new int[] {t.kvStart(), t.kvEnd()}
            : new int[] {Math.min(old[0], t.kvStart()), Math.max(old[1], t.kvEnd())};
        long addedKeys = (merged[1] - merged[0]) - (old == null ? 0 : old[1] - old[0]);
        long bytes = NanoBatch.tensorBytes(mb.shape(), bwd != null, queryRows + t.qLen(), keyRows + addedKeys)
            + NanoBatch.frameOverhead(group.size() + 1);
        if (!group.isEmpty() && bytes > limit) {
          groups.add(group);
          group = new ArrayList<>();
          kv.clear();
          queryRows = 0;
          keyRows = 0;
          merged = new int[] {t.kvStart(), t.kvEnd()};
          addedKeys = t.kvLen();
        }
        group.add(i);
        kv.put(t.doc(), merged);
        queryRows += t.qLen();
        keyRows += addedKeys;
      }
      if (!group.isEmpty()) {
        groups.add(group);
      }
      return groups;
    }

    /** One line per call in progress, for {@link DistcaClient#diagnostics()}. */
    String describe(long nowMs) {
      return "step " + step + " " + (bwd == null ? "forward" : "backward") + ": " + outstanding.get() + " of " + requests
          + " requests outstanding, " + callRetries.get() + " retries, deadline in " + (deadlineEpochMs - nowMs)
          + " ms, request frame limit " + frameLimit + " bytes, servers " + plan.servers().stream()
              .map(ServerInfo::serverId).toList();
    }

    StepStats stats() {
      return new StepStats(tasks.size(), requests, bytesSent.get(), bytesReceived.get(),
          bwd == null ? flops : 2.5 * flops, callRetries.get(), plan.planNanos(), System.nanoTime() - startNanos,
          plan.imbalance(), planWaitNanos, 0, List.copyOf(timings));
    }

    void launch() {
      Map<Integer, List<Integer>> byServer = new LinkedHashMap<>();
      for (int i = 0; i < tasks.size(); i++) {
        byServer.computeIfAbsent(tasks.get(i).server(), k -> new ArrayList<>()).add(i);
      }
      List<Runnable> sends = new ArrayList<>();
      for (var e : byServer.entrySet()) {
        for (List<Integer> half : pingPong(e.getValue())) {
          for (List<Integer> group : fitFrames(half, frameLimit)) {
            NanoBatch nb = nanoBatch(group);
            flops += nb.flops(mb.shape(), mb.causal());
            requests++;
            outstanding.incrementAndGet();
            int target = avoidQuarantined(e.getKey());
            sends.add(() -> send(nb, group, target, 0));
          }
        }
      }
      if (sends.isEmpty()) {
        result.complete(this);
        return;
      }
      active.add(this);
      result.whenComplete((c, err) -> active.remove(this));
      // the last word on a call: whatever happens to its requests (a callback lost on some thread),
      // it ends by its deadline with a typed error naming what is outstanding
      long guardMs = Math.max(0, deadlineEpochMs - System.currentTimeMillis()) + 1000;
      var guard = group.schedule(() -> fail(new DistcaException("step " + step + " of job " + ctx.job + ": "
          + (bwd == null ? "forward" : "backward") + " call did not complete by its deadline: " + describe(
              System.currentTimeMillis()), new TimeoutException("step deadline"))), guardMs, TimeUnit.MILLISECONDS);
      result.whenComplete((c, err) -> guard.cancel(false));
      sends.forEach(Runnable::run);
    }

    private NanoBatch nanoBatch(List<Integer> taskIdx) {
      List<ClientTask> nbTasks = new ArrayList<>(taskIdx.size());
      for (int i : taskIdx) {
        nbTasks.add(tasks.get(i));
      }
      return new NanoBatch(nbTasks);
    }

    /** Splits a server's tasks into two nano-batches of about equal FLOPs (largest first, greedy). */
    private List<List<Integer>> pingPong(List<Integer> taskIdx) {
      if (!ctx.pingPong || taskIdx.size() < 2) {
        return List.of(taskIdx);
      }
      List<Integer> sorted = new ArrayList<>(taskIdx);
      sorted.sort(Comparator.comparingDouble((Integer i) -> -taskFlops(tasks.get(i))).thenComparingInt(i -> i));
      List<Integer> a = new ArrayList<>();
      List<Integer> b = new ArrayList<>();
      double fa = 0;
      double fb = 0;
      for (int i : sorted) {
        double f = taskFlops(tasks.get(i));
        if (fa <= fb) {
          a.add(i);
          fa += f;
        } else {
          b.add(i);
          fb += f;
        }
      }
      a.sort(null);
      b.sort(null);
      return List.of(a, b);
    }

    private double taskFlops(ClientTask t) {
      return io.distca.protocol.model.CostModel.pairs(t.qLen(), t.kvLen(), mb.causal(), t.diagonal(mb.causal()));
    }

    private void send(NanoBatch nb, List<Integer> taskIdx, int server, int attempt) {
      if (result.isDone()) {
        return;
      }
      ServerInfo target = plan.servers().get(server);
      MessageType type = bwd == null ? MessageType.FORWARD_REQUEST : MessageType.BACKWARD_REQUEST;
      AttentionRequest meta = nb.meta(ctx.job, step, deadlineEpochMs, attempt, mb.shape(), mb.causal());
      long timeout = Math.min(ctx.requestTimeout.toMillis(), Math.max(1, deadlineEpochMs - System.currentTimeMillis()));
      Attempt at = new Attempt(target.serverId(), attempt, nb);
      servers.get(target.host(), target.port())
          .thenCompose(conn -> {
            long peerLimit = conn.helloOk() == null ? ctx.maxFrameBytes : Math.min(ctx.maxFrameBytes, conn.helloOk().maxFrameBytes());
            if (nb.frameBytes(mb.shape(), bwd != null) > peerLimit && nb.tasks.size() > 1) {
              // a retry to a server that takes smaller requests than those this call was cut for
              throw new CompletionException(new RequestTooLarge(peerLimit));
            }
            long buildStart = System.nanoTime();
            Message msg = nb.build(type, meta, mb, cu, bwd, allocator);
            at.bytesSent = msg.tensors().byteSize();
            bytesSent.addAndGet(at.bytesSent);
            at.handedOverNanos = System.nanoTime();
            at.sendNanos = at.handedOverNanos - buildStart;
            return conn.request(msg).orTimeout(timeout, TimeUnit.MILLISECONDS);
          })
          .whenComplete((reply, err) -> {
            long arrived = System.nanoTime();
            if (err == null) {
              try {
                accept(nb, taskIdx, reply, at, arrived);
              } catch (RuntimeException e) {
                at.failed(e, arrived);
                fail(e);
                return;
              } finally {
                reply.close();
              }
              if (outstanding.decrementAndGet() == 0) {
                result.complete(this);
              }
              return;
            }
            Throwable cause = unwrap(err);
            at.failed(cause, arrived);
            if (cause instanceof RequestTooLarge tooLarge) {
              resend(taskIdx, server, attempt, tooLarge.limit);
              return;
            }
            retryOrFail(nb, taskIdx, server, attempt, cause);
          });
    }

    /** Sends the tasks of a request that is too large for {@code server} as several that fit. */
    private void resend(List<Integer> taskIdx, int server, int attempt, long limit) {
      List<List<Integer>> groups = fitFrames(taskIdx, limit);
      outstanding.addAndGet(groups.size() - 1);
      requests += groups.size() - 1;
      for (List<Integer> g : groups) {
        send(nanoBatch(g), g, server, attempt);
      }
    }

    /** One request attempt's measurements; its outcome is recorded exactly once. */
    private final class Attempt {
      final String server;
      final int attempt;
      final NanoBatch nb;
      long sendNanos;
      long handedOverNanos;
      long bytesSent;

      Attempt(String server, int attempt, NanoBatch nb) {
        this.server = server;
        this.attempt = attempt;
        this.nb = nb;
        requestsStarted.incrementAndGet();
        tasksSent.addAndGet(nb.tasks.size());
      }

      private double flops() {
        double forward = nb.flops(mb.shape(), mb.causal());
        return bwd == null ? forward : 2.5 * forward;
      }

      void answered(long bytesReceived, long arrivedNanos, AttentionResponse response, long mergeNanos) {
        long queue = response == null ? 0 : response.queueNanos();
        long compute = response == null ? 0 : response.computeNanos();
        int fused = response == null ? 1 : response.fusedWith();
        timings.add(new RequestTiming(server, attempt, nb.tasks.size(), flops(), bytesSent, bytesReceived, sendNanos,
            arrivedNanos - handedOverNanos, queue, compute, fused, mergeNanos, null));
        requestsAnswered.incrementAndGet();
        tasksAnswered.addAndGet(nb.tasks.size());
      }

      void failed(Throwable cause, long arrivedNanos) {
        long roundTrip = handedOverNanos == 0 ? 0 : arrivedNanos - handedOverNanos;
        timings.add(new RequestTiming(server, attempt, nb.tasks.size(), flops(), bytesSent, 0, sendNanos, roundTrip, 0,
            0, 0, 0, String.valueOf(cause)));
        requestsFailed.incrementAndGet();
        tasksFailed.addAndGet(nb.tasks.size());
      }
    }

    private void accept(NanoBatch nb, List<Integer> taskIdx, Message reply, Attempt at, long arrivedNanos) {
      TensorSet t = reply.tensors();
      if (t == null) {
        throw new IllegalStateException("server answered " + reply.type() + " without tensors");
      }
      long mergeStart = System.nanoTime();
      bytesReceived.addAndGet(t.byteSize());
      if (bwd == null) {
        assembler.acceptForward(nb, taskIdx, t.get("o"), t.get("lse"));
      } else {
        assembler.acceptBackward(nb, taskIdx, t.get("dq"), t.get("dk"), t.get("dv"));
      }
      at.answered(t.byteSize(), arrivedNanos, reply.meta() instanceof AttentionResponse r ? r : null,
          System.nanoTime() - mergeStart);
    }

    private void retryOrFail(NanoBatch nb, List<Integer> taskIdx, int server, int attempt, Throwable cause) {
      // a frame the server refused as too large (it closes the connection after saying so) fails the same way again
      boolean refusedFrame = cause instanceof ConnectionLostException && cause.getCause() instanceof ProtocolException refusal
          && refusal.code() == ErrorCode.FRAME_TOO_LARGE;
      boolean retryable = !refusedFrame && (cause instanceof ConnectionLostException || cause instanceof TimeoutException
          || (cause instanceof ProtocolException pe && (pe.code() == ErrorCode.OVERLOADED
              || pe.code() == ErrorCode.DRAINING || pe.code() == ErrorCode.INTERNAL
              || pe.code() == ErrorCode.TOO_MANY_CONNECTIONS)));
      long left = deadlineEpochMs - System.currentTimeMillis();
      if (!retryable || attempt + 1 >= ctx.maxAttempts || left <= 0) {
        List<Long> ids = new ArrayList<>(nb.tasks.size());
        for (ClientTask t : nb.tasks) {
          ids.add(t.id());
        }
        String why = !retryable ? "not retryable" : left <= 0 ? "step deadline passed" : "attempts exhausted";
        fail(new DistcaException("step " + step + " of job " + ctx.job + ": tasks " + ids + " (last on "
            + plan.servers().get(server).serverId() + ") failed after " + (attempt + 1) + " attempts, " + why + ": "
            + cause, cause));
        return;
      }
      suspects.add(server);
      if (ctx.quarantineMs > 0 && !(cause instanceof ProtocolException pe && pe.code() == ErrorCode.OVERLOADED)) {
        quarantine.put(plan.servers().get(server).serverId(), System.currentTimeMillis() + ctx.quarantineMs);
      }
      int next = nextServer(server);
      // back off on overload as the server asks; on repeated failures, exponentially, so that a
      // pool that is down entirely is not hammered until the deadline
      long delay = backoffMillis(cause, attempt);
      delay = Math.min(delay, left / 2);
      retries.incrementAndGet();
      callRetries.incrementAndGet();
      metrics.retried(cause, next != server);
      LOG.info("step {}: re-dispatching {} tasks from {} to {} (attempt {}): {}", step, nb.tasks.size(),
          plan.servers().get(server).serverId(), plan.servers().get(next).serverId(), attempt + 2, cause.toString());
      if (delay > 0) {
        group.schedule(() -> send(nb, taskIdx, next, attempt + 1), delay, TimeUnit.MILLISECONDS);
      } else {
        send(nb, taskIdx, next, attempt + 1);
      }
    }

    /**
     * How long to wait before attempt {@code attempt + 1}: at least what an overloaded server asked
     * for, doubled for every earlier attempt and jittered, so that many refused clients spread their
     * retries out instead of returning together; failures without a hint back off from 10 ms.
     */
    private long backoffMillis(Throwable cause, int attempt) {
      long base = cause instanceof ProtocolException pe && pe.retryAfterMs() > 0 ? pe.retryAfterMs()
          : attempt == 0 ? 0 : 10;
      long scaled = Math.min(2000, base << Math.min(attempt, 6));
      return (long) (scaled * (0.5 + java.util.concurrent.ThreadLocalRandom.current().nextDouble()));
    }

    /** {@code server}, or the next one not in quarantine when it is (the plan's choice when all are). */
    private int avoidQuarantined(int server) {
      int n = plan.servers().size();
      long now = System.currentTimeMillis();
      for (int i = 0; i < n; i++) {
        int candidate = (server + i) % n;
        Long until = quarantine.get(plan.servers().get(candidate).serverId());
        if (until == null || until < now) {
          return candidate;
        }
      }
      return server;
    }

    /** The next server after {@code from} that has not failed in this call; all suspects are forgiven when none is left. */
    private int nextServer(int from) {
      int n = plan.servers().size();
      for (int i = 1; i <= n; i++) {
        int candidate = (from + i) % n;
        if (!suspects.contains(candidate)) {
          return candidate;
        }
      }
      suspects.clear();
      return (from + 1) % n;
    }

    private void fail(Throwable t) {
      if (result.completeExceptionally(t)) {
        assembler.close();
      }
    }
  }

  /** A request larger than its server's advertised frame limit: split, not sent. */
  private static final class RequestTooLarge extends RuntimeException {
    private static final long serialVersionUID = 1L;
    final long limit;

    RequestTooLarge(long limit) {
      super("request above the server's frame limit of " + limit + " bytes", null, false, false);
      this.limit = limit;
    }
  }

  private static Throwable unwrap(Throwable t) {
    while (t instanceof CompletionException && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  @Override
  public void close() {
    // calls still in progress end now, typed, and release what they hold before the allocator closes
    for (Call c : active) {
      c.fail(new DistcaException("step " + c.step + " of job " + ctx.job + ": the client was closed during the call",
          null));
    }
    servers.close();
    dispatcher.close();
    group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    allocator.close();
  }
}
