package io.distca.observability;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.prometheus.metrics.exporter.httpserver.MetricsHandler;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * The admin port of a service, separate from its data port so that scrapes and probes never queue
 * behind tensors: {@code /metrics} (Prometheus text or OpenMetrics, through the Prometheus Java
 * client's handler), {@code /healthz} (liveness: the process answers and is not broken) and
 * {@code /readyz} (readiness: it should get traffic now). A failing probe answers 503 with the
 * reason as the body.
 */
public final class AdminServer implements AutoCloseable {
  public static final String METRICS = "/metrics";
  public static final String HEALTHZ = "/healthz";
  public static final String READYZ = "/readyz";

  private final HttpServer server;
  private final ExecutorService executor;
  private boolean closed;

  /**
   * @param port 0 picks a free port
   */
  public AdminServer(String host, int port, PrometheusRegistry registry, HealthCheck liveness, HealthCheck readiness) {
    try {
      this.server = HttpServer.create(new InetSocketAddress(host, port), 16);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot open the admin port " + host + ":" + port + ": " + e.getMessage(), e);
    }
    // Two threads: a scrape and a probe may overlap; nothing here blocks for long.
    this.executor = Executors.newFixedThreadPool(2, r -> {
      Thread t = new Thread(r, "distca-admin-http");
      t.setDaemon(true);
      return t;
    });
    server.setExecutor(executor);
    server.createContext(METRICS, new MetricsHandler(registry));
    server.createContext(HEALTHZ, exchange -> probe(exchange, liveness, "alive"));
    server.createContext(READYZ, exchange -> probe(exchange, readiness, "ready"));
    server.start();
  }

  public int port() {
    return server.getAddress().getPort();
  }

  private static void probe(HttpExchange exchange, HealthCheck check, String okBody) throws IOException {
    try (exchange) {
      if (!exchange.getRequestURI().getPath().equals(exchange.getHttpContext().getPath())) {
        respond(exchange, 404, "not found");
        return;
      }
      String failure;
      try {
        failure = check.failure();
      } catch (RuntimeException e) {
        failure = "probe failed: " + e;
      }
      respond(exchange, failure == null ? 200 : 503, failure == null ? okBody : failure);
    }
  }

  private static void respond(HttpExchange exchange, int status, String body) throws IOException {
    byte[] bytes = (body + "\n").getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
    boolean head = exchange.getRequestMethod().equalsIgnoreCase("HEAD");
    exchange.sendResponseHeaders(status, head ? -1 : bytes.length);
    if (!head) {
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(bytes);
      }
    }
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    server.stop(0);
    executor.shutdownNow();
    try {
      executor.awaitTermination(2, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
