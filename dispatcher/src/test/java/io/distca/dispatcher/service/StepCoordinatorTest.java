package io.distca.dispatcher.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.dispatcher.plan.DistcaPlanner;
import io.distca.dispatcher.plan.PlanOptions;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.PlanResponse;
import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.ServerInfo;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** One plan per (job, step) over all ranks' documents; late and inconsistent ranks handled. */
class StepCoordinatorTest {
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
  private final List<ServerInfo> servers = new ArrayList<>(List.of(
      new ServerInfo("s-0", "h", 1, 1e12), new ServerInfo("s-1", "h", 2, 1e12), new ServerInfo("s-2", "h", 3, 1e12)));
  private final AtomicInteger plans = new AtomicInteger();

  @AfterEach
  void stop() {
    timer.shutdownNow();
  }

  private StepCoordinator coordinator(long gatherMs) {
    return new StepCoordinator(new DistcaPlanner(), PlanOptions.defaults(), () -> servers, timer, gatherMs,
        new StepCoordinator.PlanListener() {
          @Override
          public void planned(io.distca.dispatcher.plan.Plan plan, long planNanos, long gatherNanos) {
            plans.incrementAndGet();
          }

          @Override
          public void planFailed() {}
        });
  }

  private static PlanRequest request(String job, long step, int rank, int world, int... docs) {
    return new PlanRequest(job, step, rank, world, 8, 2, 64, "bf16", true, docs, 1024);
  }

  @Test
  void allRanksOfAStepShareOnePlanThatCoversEveryQueryRowOnce() throws Exception {
    StepCoordinator c = coordinator(10_000);
    CompletableFuture<PlanResponse> r0 = c.submit(request("j", 5, 0, 3, 9000, 100));
    CompletableFuture<PlanResponse> r1 = c.submit(request("j", 5, 1, 3, 300, 300, 300));
    assertFalse(r0.isDone(), "planned before every rank asked");
    CompletableFuture<PlanResponse> r2 = c.submit(request("j", 5, 2, 3, 4096));
    int[][] docs = {{9000, 100}, {300, 300, 300}, {4096}};
    List<CompletableFuture<PlanResponse>> all = List.of(r0, r1, r2);
    for (int rank = 0; rank < 3; rank++) {
      PlanResponse p = all.get(rank).get(5, TimeUnit.SECONDS);
      assertEquals(rank, p.rank());
      assertEquals(3, p.servers().size());
      int[][] covered = new int[docs[rank].length][];
      for (int d = 0; d < docs[rank].length; d++) {
        covered[d] = new int[docs[rank][d]];
      }
      for (PlannedTask t : p.tasks()) {
        for (int q = t.qStart(); q < t.qEnd(); q++) {
          covered[t.doc()][q]++;
        }
        assertEquals(0, t.kvStart());
        assertTrue(t.kvEnd() >= t.qEnd(), "causal shard without its key prefix: " + t);
      }
      for (int[] doc : covered) {
        for (int n : doc) {
          assertEquals(1, n, "a query row not covered exactly once");
        }
      }
    }
    assertEquals(1, plans.get(), "the step was planned more than once");
  }

  @Test
  void aLateRankDoesNotHoldTheStepPastTheGatherDeadline() throws Exception {
    StepCoordinator c = coordinator(200);
    CompletableFuture<PlanResponse> r0 = c.submit(request("j", 1, 0, 2, 5000));
    PlanResponse p = r0.get(5, TimeUnit.SECONDS);
    assertFalse(p.tasks().isEmpty());
    // the latecomer is planned on its own
    PlanResponse late = c.submit(request("j", 1, 1, 2, 700)).get(5, TimeUnit.SECONDS);
    assertEquals(1, late.rank());
    assertEquals(700, late.tasks().stream().mapToInt(t -> t.qEnd() - t.qStart()).sum());
  }

  @Test
  void byteBudgetsShapeThePlanAndAnImpossibleOneStillGetsAPlan() throws Exception {
    int[] docs = {6000, 3000, 2000, 1500, 800};
    // generous budgets: the plan is made under them
    StepCoordinator roomy = new StepCoordinator(new DistcaPlanner(), PlanOptions.defaults(), () -> servers,
        id -> 1L << 40, timer, 10_000, StepCoordinator.PlanListener.NONE);
    PlanResponse a = roomy.submit(request("j", 1, 0, 1, docs)).get(5, TimeUnit.SECONDS);
    // a budget no plan can meet: the dispatcher falls back to planning without budgets
    StepCoordinator tight = new StepCoordinator(new DistcaPlanner(), PlanOptions.defaults(), () -> servers,
        id -> 1024L, timer, 10_000, StepCoordinator.PlanListener.NONE);
    PlanResponse b = tight.submit(request("j", 1, 0, 1, docs)).get(5, TimeUnit.SECONDS);
    for (PlanResponse p : List.of(a, b)) {
      assertEquals(java.util.Arrays.stream(docs).sum(), p.tasks().stream().mapToInt(t -> t.qEnd() - t.qStart()).sum());
    }
  }

  @Test
  void ranksThatDisagreeOnTheModelAreRefused() {
    StepCoordinator c = coordinator(10_000);
    c.submit(request("j", 1, 0, 2, 100));
    PlanRequest other = new PlanRequest("j", 1, 1, 2, 16, 2, 64, "bf16", true, new int[] {100}, 1024);
    ProtocolException e = assertThrows(ProtocolException.class, () -> c.submit(other));
    assertEquals(ErrorCode.INVALID_METADATA, e.code());
  }

  @Test
  void noLiveServerIsATypedErrorWithARetryHint() {
    servers.clear();
    StepCoordinator c = coordinator(10_000);
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> c.submit(request("j", 1, 0, 1, 100)).get(5, TimeUnit.SECONDS));
    ProtocolException pe = assertInstanceOf(ProtocolException.class, e.getCause());
    assertEquals(ErrorCode.NO_SERVERS, pe.code());
    assertTrue(pe.retryAfterMs() > 0);
  }

  @Test
  void badRequestsNameTheField() {
    StepCoordinator c = coordinator(10_000);
    assertEquals("doc_lengths[1]", assertThrows(ProtocolException.class,
        () -> c.submit(request("j", 1, 0, 1, 10, -1))).field());
    assertEquals("rank", assertThrows(ProtocolException.class,
        () -> c.submit(request("j", 1, 2, 2, 10))).field());
    assertEquals("dtype", assertThrows(ProtocolException.class,
        () -> c.submit(new PlanRequest("j", 1, 0, 1, 8, 2, 64, "int8", true, new int[] {1}, 1024))).field());
  }
}
