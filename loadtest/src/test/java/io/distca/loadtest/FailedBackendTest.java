package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.DistcaClient;
import io.distca.server.AttentionServer;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.ReferenceAttention;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * A server whose backend fails for good (as a GPU context does after an asynchronous fault: every
 * later batch fails) reports itself neither ready nor live, the dispatcher stops planning work on
 * it, and the training steps go on, checked, on the other server.
 */
class FailedBackendTest {

  /** The CPU backend until {@link #breakNow}; from then on every batch fails, as a poisoned CUDA context's do. */
  private static final class BreakableBackend extends ForwardingBackend {
    private volatile String failure;

    BreakableBackend() {
      super(new CpuBackend(new CpuBackendOptions().threads(1)));
    }

    void breakNow(String why) {
      failure = why;
    }

    @Override
    public String failure() {
      return failure;
    }

    @Override
    public void forward(AttentionBatch batch) {
      requireUsable();
      inner.forward(batch);
    }

    @Override
    public void backward(AttentionBatch batch) {
      requireUsable();
      inner.backward(batch);
    }

    private void requireUsable() {
      String f = failure;
      if (f != null) {
        throw new IllegalStateException("backend failed earlier: " + f);
      }
    }
  }

  private static HttpResponse<String> get(int port, String path) throws Exception {
    return HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
        .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
  }

  /** The distca_server_backend_failed sample line of the server's /metrics. */
  private static String backendFailedGauge(int adminPort) throws Exception {
    return get(adminPort, "/metrics").body().lines().filter(l -> l.startsWith("distca_server_backend_failed{"))
        .findFirst().orElseThrow(() -> new AssertionError("no distca_server_backend_failed on port " + adminPort));
  }

  @Test
  void aServerWhoseBackendFailedLeavesThePlanAndTheStepsGoOn() throws Exception {
    BreakableBackend[] backends = new BreakableBackend[2];
    EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(2);
    co.adminPort = 0;
    co.backendFactory = i -> backends[i] = new BreakableBackend();
    try (BufferAllocator root = new RootAllocator(); EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
      cluster.awaitReady(20_000);
      AttentionServer broken = cluster.servers().get(1);
      AttentionServer healthy = cluster.servers().get(0);
      List<DistcaClient> clients = new ArrayList<>();
      try (ReferenceAttention reference = new ReferenceAttention()) {
        EndToEndTest.connect(cluster, "failed-backend", 2, root, clients);
        int[][] docs = {{700, 129, 37}, {513, 256, 3}};
        EndToEndTest.runStep(clients, reference, root, docs, true, 1);
        assertTrue(broken.tasksServed() > 0 && healthy.tasksServed() > 0, "both servers took work before the fault");
        assertEquals(200, get(broken.adminPort(), "/readyz").statusCode());

        backends[1].breakNow("injected fault: CUDA_ERROR_ILLEGAL_ADDRESS");
        HttpResponse<String> ready = get(broken.adminPort(), "/readyz");
        HttpResponse<String> alive = get(broken.adminPort(), "/healthz");
        assertEquals(503, ready.statusCode(), ready.body());
        assertTrue(ready.body().contains("backend failed: injected fault"), ready.body());
        assertEquals(503, alive.statusCode(), alive.body());
        assertEquals(200, get(healthy.adminPort(), "/readyz").statusCode());
        assertTrue(backendFailedGauge(broken.adminPort()).endsWith(" 1.0"), backendFailedGauge(broken.adminPort()));
        assertTrue(backendFailedGauge(healthy.adminPort()).endsWith(" 0.0"), backendFailedGauge(healthy.adminPort()));

        // the next heartbeat says so; the dispatcher then plans on the healthy server only
        long until = System.currentTimeMillis() + 15_000;
        while (cluster.dispatcher().membership().live().size() != 1 && System.currentTimeMillis() < until) {
          Thread.sleep(20);
        }
        assertEquals(List.of(healthy.serverId()),
            cluster.dispatcher().membership().live().stream().map(s -> s.serverId()).toList());
        long servedBefore = broken.tasksServed();
        for (long step = 2; step <= 3; step++) {
          EndToEndTest.runStep(clients, reference, root, docs, step == 2, step);
        }
        assertEquals(servedBefore, broken.tasksServed(), "no work reached the failed server");
      } finally {
        for (DistcaClient c : clients) {
          c.close();
        }
      }
    }
  }
}
