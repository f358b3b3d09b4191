package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.ClientContext;
import io.distca.client.ClientMeters;
import io.distca.client.DistcaClient;
import io.distca.dispatcher.service.DispatcherMeters;
import io.distca.loadtest.EmbeddedCluster;
import io.distca.observability.AdminServer;
import io.distca.observability.CatalogueMeters;
import io.distca.observability.MeterDefinition;
import io.distca.observability.MetricsDocs;
import io.distca.observability.ServiceTelemetry;
import io.distca.server.AttentionServer;
import io.distca.server.ServerMeters;
import io.distca.server.backend.ReferenceAttention;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The admin ports of a running cluster: every service answers /healthz and /readyz, /metrics carries
 * every meter of its catalogue with values that match what the step did, and a draining server
 * turns not-ready (and the dispatcher counts it as draining).
 */
class ServiceEndpointsTest {

  @Test
  void adminPortsServeHealthReadinessAndTheCatalogues() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(2);
      co.adminPort = 0;
      ServiceTelemetry.Options to = ServiceTelemetry.Options.loopback("trainer-client");
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root);
          ServiceTelemetry clientTelemetry = new ServiceTelemetry(to);
          ReferenceAttention reference = new ReferenceAttention()) {
        cluster.awaitReady(20_000);
        ClientContext cc = new ClientContext();
        cc.dispatcherPort = cluster.dispatcherPort();
        cc.job = "endpoints";
        cc.shardTokens = 256;
        cc.meterRegistry = clientTelemetry.registry();
        try (DistcaClient client = new DistcaClient(cc, root)) {
          new StepRunner(List.of(client), reference, root).step(1, new int[][] {{600, 129, 40}}, true);
        }

        int dispatcherAdmin = cluster.dispatcher().adminPort();
        for (int port : adminPorts(cluster)) {
          assertEquals(200, Http.get(port, AdminServer.HEALTHZ).status());
          Http.Response ready = Http.get(port, AdminServer.READYZ);
          assertEquals(200, ready.status(), ready.body());
        }

        long tasks = 0;
        for (AttentionServer s : cluster.servers()) {
          String metrics = Http.get(s.adminPort(), AdminServer.METRICS).body();
          assertCatalogueExported(metrics, CatalogueMeters.definitions(ServerMeters.class));
          tasks += (long) value(metrics, "distca_server_tasks_total", "phase=\"forward\"");
          assertTrue(value(metrics, "distca_server_wire_bytes_total", "direction=\"received\"") > 0, metrics);
          assertEquals(1.0, value(metrics, "distca_server_ready", ""));
          assertTrue(value(metrics, "jvm_memory_used_bytes", "area=\"heap\"") > 0);
        }
        String clientMetrics = Http.get(clientTelemetry.adminPort(), AdminServer.METRICS).body();
        assertCatalogueExported(clientMetrics, CatalogueMeters.definitions(ClientMeters.class));
        assertEquals(tasks, (long) value(clientMetrics, "distca_client_tasks_total", "phase=\"forward\""),
            "the servers served exactly the tasks the client sent");
        String dispatcherMetrics = Http.get(dispatcherAdmin, AdminServer.METRICS).body();
        assertCatalogueExported(dispatcherMetrics, CatalogueMeters.definitions(DispatcherMeters.class));
        assertEquals(2.0, value(dispatcherMetrics, "distca_dispatcher_servers", "state=\"live\""));
        assertEquals(1.0, value(dispatcherMetrics, "distca_dispatcher_plans_total", "outcome=\"planned\""));

        AttentionServer drained = cluster.servers().get(1);
        assertTrue(drained.drain());
        Http.Response notReady = Http.get(drained.adminPort(), AdminServer.READYZ);
        assertEquals(503, notReady.status());
        assertEquals("draining", notReady.body().trim());
        assertEquals(200, Http.get(drained.adminPort(), AdminServer.HEALTHZ).status(), "draining is still alive");
        long until = System.currentTimeMillis() + 10_000;
        while (value(Http.get(dispatcherAdmin, AdminServer.METRICS).body(), "distca_dispatcher_servers",
            "state=\"draining\"") != 1.0) {
          assertTrue(System.currentTimeMillis() < until, "the dispatcher never counted the draining server");
          Thread.sleep(50);
        }
      }
    }
  }

  private static int[] adminPorts(EmbeddedCluster cluster) {
    int[] ports = new int[cluster.servers().size() + 1];
    ports[0] = cluster.dispatcher().adminPort();
    for (int i = 0; i < cluster.servers().size(); i++) {
      ports[i + 1] = cluster.servers().get(i).adminPort();
    }
    return ports;
  }

  /** Every series of every catalogue meter is in the exposition, not just declared in code. */
  private static void assertCatalogueExported(String exposition, List<MeterDefinition> catalogue) {
    for (MeterDefinition d : catalogue) {
      for (String series : MetricsDocs.prometheusSeries(d)) {
        assertTrue(Pattern.compile("(?m)^" + Pattern.quote(series) + "[{ ]").matcher(exposition).find(),
            series + " (" + d.name() + ") is missing from /metrics");
      }
    }
  }

  /** Sum of the samples of {@code series} whose labels contain {@code labelMatch}. */
  static double value(String exposition, String series, String labelMatch) {
    Matcher m = Pattern.compile("(?m)^" + Pattern.quote(series) + "(\\{[^}]*\\})? (\\S+)$").matcher(exposition);
    double sum = 0;
    boolean found = false;
    while (m.find()) {
      String labels = m.group(1) == null ? "" : m.group(1);
      if (labels.contains(labelMatch)) {
        sum += Double.parseDouble(m.group(2));
        found = true;
      }
    }
    assertTrue(found, "no sample of " + series + " with " + labelMatch);
    return sum;
  }
}
