package io.distca.observability;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class ServiceTelemetryTest {
  enum TestMeters implements MeterSpec {
    REQUESTS(MeterDefinition.counter("distca.test.requests", "requests", "Requests seen.", TagSpec.PHASE)),
    LATENCY(MeterDefinition.timer("distca.test.latency", "Latency.", MeterDefinition.latencyBuckets(), TagSpec.PHASE)),
    FILL(MeterDefinition.summary("distca.test.fill", "ratio", "Fill.", new double[] {0.5, 1})),
    DEPTH(MeterDefinition.gauge("distca.test.depth", "requests", "Queue depth."));

    private final MeterDefinition definition;

    TestMeters(MeterDefinition definition) {
      this.definition = definition;
    }

    @Override
    public MeterDefinition definition() {
      return definition;
    }
  }

  private static final HttpClient HTTP = HttpClient.newHttpClient();

  private static HttpResponse<String> get(int port, String path) throws Exception {
    return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void adminPortServesMetricsAndProbes() throws Exception {
    AtomicReference<String> notReady = new AtomicReference<>("backend loading");
    ServiceTelemetry.Options o = ServiceTelemetry.Options.loopback("test");
    o.readiness = notReady::get;
    try (ServiceTelemetry t = new ServiceTelemetry(o)) {
      CatalogueMeters<TestMeters> meters = new CatalogueMeters<>(TestMeters.class);
      meters.bindTo(t.registry());
      assertEquals(List.of(TestMeters.DEPTH), meters.unbound());
      IllegalStateException missing = assertThrows(IllegalStateException.class, () -> meters.requireAllBound("test"));
      assertTrue(missing.getMessage().contains("DEPTH"), missing.getMessage());
      meters.gauge(TestMeters.DEPTH, notReady, r -> r.get() == null ? 0 : 3);
      assertEquals(List.of(), meters.unbound());
      meters.requireAllBound("test");
      meters.counter(TestMeters.REQUESTS, "forward").increment(2);

      HttpResponse<String> metrics = get(t.adminPort(), AdminServer.METRICS);
      assertEquals(200, metrics.statusCode());
      String body = metrics.body();
      assertTrue(body.contains("distca_test_requests_total{component=\"test\",phase=\"forward\"} 2.0"), body);
      // eager: the untouched phase exists at zero, and histograms have their buckets
      assertTrue(body.contains("distca_test_requests_total{component=\"test\",phase=\"backward\"} 0.0"), body);
      assertTrue(body.contains("distca_test_latency_seconds_bucket{component=\"test\",phase=\"backward\",le=\"0.001\"}"), body);
      assertTrue(body.contains("distca_test_fill_ratio_bucket{component=\"test\",le=\"0.5\"}"), body);
      assertTrue(body.contains("distca_test_depth_requests{component=\"test\"} 3.0"), body);
      assertTrue(body.contains("jvm_memory_used_bytes"), "JVM metrics are bound");
      assertTrue(body.contains("netty_allocator_memory_used"), "Netty allocator metrics are bound");

      assertEquals(200, get(t.adminPort(), AdminServer.HEALTHZ).statusCode());
      HttpResponse<String> ready = get(t.adminPort(), AdminServer.READYZ);
      assertEquals(503, ready.statusCode());
      assertEquals("backend loading", ready.body().trim());
      notReady.set(null);
      assertEquals(200, get(t.adminPort(), AdminServer.READYZ).statusCode());
      assertEquals(404, get(t.adminPort(), "/readyz/extra").statusCode());
    }
  }

  @Test
  void catalogueRejectsMeterUsesItDoesNotList() {
    try (ServiceTelemetry t = telemetry()) {
      CatalogueMeters<TestMeters> meters = new CatalogueMeters<>(TestMeters.class);
      meters.bindTo(t.registry());
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> meters.counter(TestMeters.REQUESTS, "task-1234"));
      assertTrue(e.getMessage().contains("has no value 'task-1234'"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> meters.counter(TestMeters.REQUESTS));
      assertThrows(IllegalArgumentException.class, () -> meters.timer(TestMeters.REQUESTS, "forward"));
      assertThrows(IllegalStateException.class, () -> meters.bindTo(t.registry()));
    }
  }

  @Test
  void definitionsFollowMicrometerNaming() {
    assertThrows(IllegalArgumentException.class,
        () -> MeterDefinition.counter("distca.server.bytes", "bytes", "Unit repeated in the name."));
    assertThrows(IllegalArgumentException.class, () -> MeterDefinition.counter("Distca_Server", null, "Not dotted."));
    assertThrows(IllegalArgumentException.class,
        () -> new MeterDefinition("distca.x.latency", MeterKind.TIMER, "milliseconds", List.of(), "Not seconds.",
            MeterDefinition.latencyBuckets()));
    assertThrows(IllegalArgumentException.class, () -> MeterDefinition.gauge("distca.x.depth", null, " "));
  }

  @Test
  void closeIsIdempotentAndFreesThePort() throws Exception {
    ServiceTelemetry.Options o = ServiceTelemetry.Options.loopback("test");
    ServiceTelemetry t = new ServiceTelemetry(o);
    int port = t.adminPort();
    t.close();
    t.close();
    assertThrows(java.io.IOException.class, () -> get(port, AdminServer.HEALTHZ));
  }

  private static ServiceTelemetry telemetry() {
    ServiceTelemetry.Options o = new ServiceTelemetry.Options();
    o.component = "test";
    return new ServiceTelemetry(o);
  }
}
