package io.distca.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.dispatcher.service.Dispatcher;
import io.distca.dispatcher.service.DispatcherContext;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * Per-request phase timings and request counts of real calls over loopback: a dispatcher and two
 * CPU attention servers. Checks that the timings account for every request and byte of a call,
 * that server-reported queue and compute times arrive, and that a request sent to a server that
 * has gone away is recorded as a failed attempt while the counts still add up.
 */
class RequestTimingTest {
  private static final AttentionShape SHAPE = new AttentionShape(2, 1, 32, DType.BF16, AttentionShape.defaultScale(32));

  @Test
  void timingsCoverEveryRequestAndCountsAddUp() throws Exception {
    try (BufferAllocator root = new RootAllocator(); Cluster cluster = new Cluster(root, 2)) {
      ClientContext cc = clientContext(cluster.dispatcher.port());
      List<Tensor> owned = new ArrayList<>();
      try (DistcaClient client = new DistcaClient(cc, root)) {
        MicroBatch mb = batch(root, owned, new int[] {700, 300, 45});
        try (ForwardResult fwd = client.forward(1, mb).get(60, TimeUnit.SECONDS)) {
          StepStats s = fwd.stats();
          assertEquals(s.requests(), s.requestTimings().size(), "one timing per request when nothing failed");
          assertEquals(s.tasks(), s.requestTimings().stream().mapToInt(RequestTiming::tasks).sum());
          assertEquals(s.bytesSent(), s.requestTimings().stream().mapToLong(RequestTiming::bytesSent).sum());
          assertEquals(s.bytesReceived(), s.requestTimings().stream().mapToLong(RequestTiming::bytesReceived).sum());
          assertEquals(s.flops(), s.requestTimings().stream().mapToDouble(RequestTiming::flops).sum(), 1e-6 * s.flops());
          for (RequestTiming t : s.requestTimings()) {
            assertNull(t.error());
            assertTrue(t.computeNanos() > 0, "the server reports its compute time: " + t);
            assertTrue(t.fusedWith() >= 1, t.toString());
            assertTrue(t.sendNanos() > 0 && t.mergeNanos() > 0, t.toString());
            assertTrue(t.roundTripNanos() >= t.queueNanos() + t.computeNanos(),
                "the server's share fits inside the round trip: " + t);
            assertTrue(cluster.ids().contains(t.server()), t.server());
          }
          assertTrue(s.planWaitNanos() > 0 && s.assemblyNanos() > 0, s.toString());
          assertTrue(s.totalNanos() >= s.planWaitNanos() + s.assemblyNanos(), s.toString());

          Tensor dO = random(root, owned, new SplittableRandom(9), mb.tokens(), SHAPE.headsQ());
          try (BackwardResult bwd = client.backward(1, new BackwardInput(mb, fwd.o(), fwd.lse(), dO))
              .get(60, TimeUnit.SECONDS)) {
            assertEquals(bwd.stats().requests(), bwd.stats().requestTimings().size());
            assertEquals(2.5 * s.flops(), bwd.stats().flops(), 1e-6 * s.flops(), "backward runs 2.5x the forward FLOPs");
            assertEquals(bwd.stats().flops(),
                bwd.stats().requestTimings().stream().mapToDouble(RequestTiming::flops).sum(), 1e-6 * s.flops());
          }
        }
        RequestCounts counts = client.requestCounts();
        assertEquals(0, counts.requestsInFlight());
        assertEquals(0, counts.requestsFailed());
        assertEquals(counts.tasksSent(), counts.tasksAnswered());
        assertEquals(2, client.knownServers().size());
      } finally {
        owned.forEach(Tensor::close);
      }
    }
  }

  @Test
  void aRequestToAServerThatIsGoneIsAFailedAttemptAndIsRetried() throws Exception {
    try (BufferAllocator root = new RootAllocator(); Cluster cluster = new Cluster(root, 2)) {
      ClientContext cc = clientContext(cluster.dispatcher.port());
      List<Tensor> owned = new ArrayList<>();
      try (DistcaClient client = new DistcaClient(cc, root)) {
        // the dispatcher still counts the closed server as live for a while, so plans include it
        cluster.servers.get(1).close();
        MicroBatch mb = batch(root, owned, new int[] {600, 500, 300});
        try (ForwardResult fwd = client.forward(1, mb).get(60, TimeUnit.SECONDS)) {
          List<RequestTiming> timings = fwd.stats().requestTimings();
          long failed = timings.stream().filter(t -> !t.answered()).count();
          assertTrue(failed > 0, "the plan used the closed server: " + timings);
          assertEquals(fwd.stats().requests(), timings.stream().filter(RequestTiming::answered).count());
          assertTrue(timings.stream().filter(t -> !t.answered()).allMatch(t -> t.server().equals("s1")));
          assertTrue(timings.stream().filter(RequestTiming::answered).allMatch(t -> t.attempt() > 0 || t.server().equals("s0")));
        }
        RequestCounts counts = client.requestCounts();
        assertTrue(counts.requestsFailed() > 0);
        assertEquals(counts.requestsStarted(), counts.requestsAnswered() + counts.requestsFailed());
        assertEquals(counts.tasksSent(), counts.tasksAnswered() + counts.tasksFailed());
      } finally {
        owned.forEach(Tensor::close);
      }
    }
  }

  private static ClientContext clientContext(int dispatcherPort) {
    ClientContext cc = new ClientContext();
    cc.dispatcherPort = dispatcherPort;
    cc.job = "timing";
    cc.shardTokens = 256;
    return cc;
  }

  private static MicroBatch batch(BufferAllocator root, List<Tensor> owned, int[] docs) {
    int tokens = 0;
    for (int d : docs) {
      tokens += d;
    }
    SplittableRandom rnd = new SplittableRandom(3);
    return new MicroBatch(SHAPE, true, docs, random(root, owned, rnd, tokens, SHAPE.headsQ()),
        random(root, owned, rnd, tokens, SHAPE.headsKv()), random(root, owned, rnd, tokens, SHAPE.headsKv()));
  }

  private static Tensor random(BufferAllocator root, List<Tensor> owned, SplittableRandom rnd, int rows, int heads) {
    Tensor t = Tensor.allocate(root, SHAPE.dtype(), rows, heads, SHAPE.headDim());
    owned.add(t);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }

  /** A dispatcher and CPU servers s0, s1, ... on loopback, all registered. */
  private static final class Cluster implements AutoCloseable {
    final Dispatcher dispatcher;
    final List<AttentionServer> servers = new ArrayList<>();

    Cluster(BufferAllocator root, int count) throws InterruptedException {
      DispatcherContext dc = new DispatcherContext();
      dc.host = "127.0.0.1";
      dc.port = 0;
      dc.heartbeatIntervalMs = 200;
      dc.deadAfterMs = 10_000;
      dispatcher = new Dispatcher(dc, root);
      for (int i = 0; i < count; i++) {
        ServerContext sc = new ServerContext();
        sc.host = "127.0.0.1";
        sc.port = 0;
        sc.serverId = "s" + i;
        sc.dispatcherHost = "127.0.0.1";
        sc.dispatcherPort = dispatcher.port();
        sc.backend = "cpu";
        sc.computeThreads = 1;
        servers.add(new AttentionServer(sc, root));
      }
      long until = System.currentTimeMillis() + 20_000;
      while (dispatcher.membership().live().size() < count && System.currentTimeMillis() < until) {
        Thread.sleep(20);
      }
      assertEquals(count, dispatcher.membership().live().size(), "servers registered");
    }

    List<String> ids() {
      return servers.stream().map(AttentionServer::serverId).toList();
    }

    @Override
    public void close() {
      servers.forEach(AttentionServer::close);
      dispatcher.close();
    }
  }
}
