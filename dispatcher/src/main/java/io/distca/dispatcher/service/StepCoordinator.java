package io.distca.dispatcher.service;

import io.distca.dispatcher.plan.Plan;
import io.distca.dispatcher.plan.PlanInput;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.plan.Planner;
import io.distca.dispatcher.plan.ServerCapacity;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.PlanResponse;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.ServerInfo;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Gathers the plan requests of all ranks of a (job, step), plans once over all their documents, and
 * answers each rank with its own tasks. If some ranks are late, the step is planned with those that
 * came once the gather deadline passes; a latecomer is then planned on its own.
 */
final class StepCoordinator {
  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(StepCoordinator.class);
  private final Planner planner;
  private final PlanOptions baseOptions;
  private final Supplier<List<ServerInfo>> liveServers;
  private final java.util.function.ToLongFunction<String> byteBudgetOf;
  private final ScheduledExecutorService timer;
  private final long gatherTimeoutMs;
  private final PlanListener listener;
  private final Map<StepKey, Gathering> open = new LinkedHashMap<>();
  private volatile PlanResponse lastPlanSummary;

  private record StepKey(String job, long step) {}

  /** Hears about each step plan (metrics); called on the planning thread, must be quick. */
  interface PlanListener {
    PlanListener NONE = new PlanListener() {
      @Override
      public void planned(Plan plan, long planNanos, long gatherNanos) {}

      @Override
      public void planFailed() {}
    };

    void planned(Plan plan, long planNanos, long gatherNanos);

    void planFailed();
  }

  private static final class Gathering {
    final PlanRequest first;
    final long openedNanos = System.nanoTime();
    final Map<Integer, PlanRequest> requests = new LinkedHashMap<>();
    final Map<Integer, CompletableFuture<PlanResponse>> answers = new LinkedHashMap<>();
    boolean planned;

    Gathering(PlanRequest first) {
      this.first = first;
    }
  }

  StepCoordinator(Planner planner, PlanOptions baseOptions, Supplier<List<ServerInfo>> liveServers,
      ScheduledExecutorService timer, long gatherTimeoutMs, PlanListener listener) {
    this(planner, baseOptions, liveServers, id -> 0L, timer, gatherTimeoutMs, listener);
  }

  /** @param byteBudgetOf bytes a server may be planned per layer, 0 for no limit */
  StepCoordinator(Planner planner, PlanOptions baseOptions, Supplier<List<ServerInfo>> liveServers,
      java.util.function.ToLongFunction<String> byteBudgetOf, ScheduledExecutorService timer, long gatherTimeoutMs,
      PlanListener listener) {
    this.byteBudgetOf = byteBudgetOf;
    this.planner = planner;
    this.baseOptions = baseOptions;
    this.liveServers = liveServers;
    this.timer = timer;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.listener = listener;
  }

  int openSteps() {
    synchronized (open) {
      return open.size();
    }
  }

  PlanResponse lastPlan() {
    return lastPlanSummary;
  }

  CompletableFuture<PlanResponse> submit(PlanRequest r) {
    validate(r);
    StepKey key = new StepKey(r.job(), r.step());
    CompletableFuture<PlanResponse> answer = new CompletableFuture<>();
    Gathering g;
    boolean ready;
    synchronized (open) {
      g = open.get(key);
      if (g == null || g.planned) {
        g = new Gathering(r);
        open.put(key, g);
        final Gathering scheduled = g;
        if (r.worldSize() > 1) {
          timer.schedule(() -> planNow(key, scheduled), gatherTimeoutMs, TimeUnit.MILLISECONDS);
        }
      } else if (!compatible(g.first, r)) {
        throw new ProtocolException(ErrorCode.INVALID_METADATA, "heads_q",
            "rank " + r.rank() + " plans step " + r.step() + " of job " + r.job()
                + " with a model shape or world size different from rank " + g.first.rank());
      }
      if (g.requests.containsKey(r.rank())) {
        // a retry of the same rank replaces its earlier request
        g.answers.get(r.rank()).completeExceptionally(new ProtocolException(ErrorCode.UNEXPECTED_MESSAGE, "rank",
            "superseded by a newer plan request of rank " + r.rank()));
      }
      g.requests.put(r.rank(), r);
      g.answers.put(r.rank(), answer);
      ready = g.requests.size() >= r.worldSize();
    }
    if (ready) {
      planNow(key, g);
    }
    return answer;
  }

  private static boolean compatible(PlanRequest a, PlanRequest b) {
    return a.worldSize() == b.worldSize() && a.headsQ() == b.headsQ() && a.headsKv() == b.headsKv()
        && a.headDim() == b.headDim() && Objects.equals(a.dtype(), b.dtype()) && a.causal() == b.causal();
  }

  private void planNow(StepKey key, Gathering g) {
    List<Integer> ranks;
    synchronized (open) {
      if (g.planned) {
        return;
      }
      g.planned = true;
      if (open.get(key) == g) {
        open.remove(key);
      }
      ranks = new ArrayList<>(g.requests.keySet());
    }
    try {
      List<ServerInfo> servers = liveServers.get();
      if (servers.isEmpty()) {
        throw new ProtocolException(ErrorCode.NO_SERVERS, null, "no live attention server is registered", 1000, null);
      }
      PlanRequest first = g.first;
      AttentionShape shape = new AttentionShape(first.headsQ(), first.headsKv(), first.headDim(),
          DType.fromWireName(first.dtype()), AttentionShape.defaultScale(first.headDim()));
      List<int[]> docs = new ArrayList<>();
      for (int rank : ranks) {
        docs.add(g.requests.get(rank).docLengths());
      }
      List<ServerCapacity> caps = new ArrayList<>();
      for (ServerInfo s : servers) {
        caps.add(new ServerCapacity(s.serverId(), s.flopsPerSecond() > 0 ? s.flopsPerSecond() : 1.0,
            byteBudgetOf.applyAsLong(s.serverId())));
      }
      PlanOptions options = baseOptions.withShardTokens(baseOptions.minShardTokens(), Math.max(baseOptions.minShardTokens(), first.shardTokens()));
      long t0 = System.nanoTime();
      Plan plan;
      try {
        plan = planner.plan(new PlanInput(shape, first.causal(), docs, caps, options));
      } catch (io.distca.dispatcher.plan.PlanInfeasibleException e) {
        // the servers' own admission control still bounds their memory: better a plan that makes
        // some requests wait for admission than no plan at all
        LOG.warn("step {} of job {} cannot meet the servers' byte budgets ({}); planning without them",
            key.step(), key.job(), e.getMessage());
        List<ServerCapacity> unlimited = new ArrayList<>();
        for (ServerCapacity c : caps) {
          unlimited.add(new ServerCapacity(c.serverId(), c.flopsPerSecond(), 0));
        }
        plan = planner.plan(new PlanInput(shape, first.causal(), docs, unlimited, options));
      }
      long planNanos = System.nanoTime() - t0;
      listener.planned(plan, planNanos, t0 - g.openedNanos);
      for (int i = 0; i < ranks.size(); i++) {
        int rank = ranks.get(i);
        PlanResponse resp = new PlanResponse(key.job(), key.step(), rank, servers, plan.tasksOf(i),
            plan.imbalance(), planNanos);
        lastPlanSummary = resp;
        g.answers.get(rank).complete(resp);
      }
    } catch (RuntimeException e) {
      listener.planFailed();
      for (int rank : ranks) {
        g.answers.get(rank).completeExceptionally(e);
      }
    }
  }

  private static void validate(PlanRequest r) {
    if (r.job() == null || r.job().isEmpty()) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, "job", "must be a non-empty string");
    }
    if (r.worldSize() < 1 || r.rank() < 0 || r.rank() >= r.worldSize()) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, "rank",
          "rank " + r.rank() + " is outside world size " + r.worldSize());
    }
    if (r.docLengths() == null) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, "doc_lengths", "is required");
    }
    for (int i = 0; i < r.docLengths().length; i++) {
      if (r.docLengths()[i] < 0) {
        throw new ProtocolException(ErrorCode.INVALID_CU_SEQLENS, "doc_lengths[" + i + "]",
            "must be >= 0, got " + r.docLengths()[i]);
      }
    }
    DType dtype = DType.fromWireName(r.dtype());
    if (dtype == null || !dtype.isFloating()) {
      throw new ProtocolException(ErrorCode.INVALID_DTYPE, "dtype", "must be bf16, fp16 or fp32, got " + r.dtype());
    }
    String problem = new AttentionShape(r.headsQ(), r.headsKv(), r.headDim(), dtype, 1f).problem();
    if (problem != null) {
      throw new ProtocolException(ErrorCode.INVALID_SHAPE, problem.substring(0, problem.indexOf(' ')), problem);
    }
  }
}
