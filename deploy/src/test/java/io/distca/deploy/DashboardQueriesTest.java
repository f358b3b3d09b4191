package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.loadtest.EmbeddedCluster;
import io.distca.observability.ServiceTelemetry;
import io.distca.server.AttentionServer;
import io.distca.server.backend.ReferenceAttention;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Proves the Grafana dashboards against a real Prometheus server (Debian's {@code prometheus}): it
 * scrapes the admin ports of a running cluster (dispatcher, two attention servers, the trainer
 * clients' registry) while trainer clients drive verified forward and backward steps through it;
 * then every query of every panel, with Grafana's variables substituted, is evaluated through
 * Prometheus's HTTP API at a time inside the load. A query that errors or returns no finite value
 * fails the test: a panel that shows nothing is a bug.
 */
class DashboardQueriesTest {
  private static final Set<String> DASHBOARD_UIDS = Set.of("distca-overview", "distca-attention-server", "distca-dispatcher");
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Scrape interval of the test's Prometheus; the rate window below covers several scrapes. */
  private static final int SCRAPE_SECONDS = 1;
  private static final String RATE_INTERVAL = "15s";

  @Test
  void dashboardsAreWellFormed() throws IOException {
    List<Path> files = dashboards();
    Set<String> uids = new HashSet<>();
    for (Path f : files) {
      JsonNode d = JSON.readTree(f.toFile());
      String uid = d.path("uid").asText();
      assertTrue(DASHBOARD_UIDS.contains(uid), f + ": unexpected uid " + uid);
      assertTrue(uids.add(uid), "uid " + uid + " used twice");
      assertEquals("DS_PROMETHEUS", d.path("__inputs").path(0).path("name").asText(), f + ": __inputs");
      JsonNode dsVar = null;
      for (JsonNode v : d.path("templating").path("list")) {
        if (v.path("name").asText().equals("DS_PROMETHEUS")) {
          dsVar = v;
        }
      }
      assertTrue(dsVar != null && dsVar.path("type").asText().equals("datasource")
          && dsVar.path("query").asText().equals("prometheus"), f + ": needs a DS_PROMETHEUS datasource variable");
      Set<Integer> ids = new HashSet<>();
      for (JsonNode p : d.path("panels")) {
        assertTrue(ids.add(p.path("id").asInt()), f + ": panel id " + p.path("id") + " twice");
        if (p.path("type").asText().equals("row")) {
          continue;
        }
        assertEquals("${DS_PROMETHEUS}", p.path("datasource").path("uid").asText(), f + ": " + p.path("title"));
        assertTrue(p.path("targets").size() > 0, f + ": panel " + p.path("title") + " has no query");
        for (JsonNode t : p.path("targets")) {
          assertEquals("${DS_PROMETHEUS}", t.path("datasource").path("uid").asText());
          assertFalse(t.path("expr").asText().isBlank(), f + ": empty query in " + p.path("title"));
        }
      }
    }
    assertEquals(DASHBOARD_UIDS, uids);
  }

  @Test
  void everyPanelQueryReturnsDataFromARealPrometheus(@TempDir Path tmp) throws Exception {
    Path prometheusBinary = Environment.executable("prometheus", "/usr/bin/prometheus");
    Environment.require(prometheusBinary != null, "the Prometheus server (Debian package prometheus)");
    try (BufferAllocator root = new RootAllocator()) {
      EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(2);
      co.adminPort = 0;
      ServiceTelemetry.Options to = ServiceTelemetry.Options.loopback("trainer-client");
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root);
          ServiceTelemetry clientTelemetry = new ServiceTelemetry(to);
          ReferenceAttention reference = new ReferenceAttention()) {
        cluster.awaitReady(20_000);
        List<Integer> targets = new ArrayList<>();
        targets.add(cluster.dispatcher().adminPort());
        for (AttentionServer s : cluster.servers()) {
          targets.add(s.adminPort());
        }
        targets.add(clientTelemetry.adminPort());
        int promPort = freePort();
        Process prometheus = startPrometheus(prometheusBinary, tmp, promPort, targets);
        try {
          awaitTargetsUp(promPort, targets.size());
          long loadEnd = driveLoad(cluster, clientTelemetry, reference, root);
          // two more scrapes, so the last samples of the load are stored
          Thread.sleep(3000L * SCRAPE_SECONDS);
          List<String> problems = new ArrayList<>();
          int queries = 0;
          for (Path f : dashboards()) {
            JsonNode d = JSON.readTree(f.toFile());
            for (JsonNode p : d.path("panels")) {
              for (JsonNode t : p.path("targets")) {
                String expr = substitute(t.path("expr").asText());
                queries++;
                String problem = evaluate(promPort, expr, loadEnd);
                if (problem != null) {
                  problems.add(f.getFileName() + " / " + p.path("title").asText() + ": " + problem + "\n    " + expr);
                }
              }
            }
          }
          assertTrue(queries > 40, "only " + queries + " queries found");
          if (!problems.isEmpty()) {
            fail(problems.size() + " of " + queries + " panel queries show nothing:\n" + String.join("\n", problems));
          }
        } finally {
          prometheus.destroy();
          if (!prometheus.waitFor(10, TimeUnit.SECONDS)) {
            prometheus.destroyForcibly();
          }
        }
      }
    }
  }

  /** Grafana's variables as a user sees the dashboard: all servers, a rate window of several scrapes. */
  static String substitute(String expr) {
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("${server}", ".*").replace("$server", ".*");
  }

  /** Null when the query returns at least one finite value at {@code epochSeconds}; else what is wrong. */
  private static String evaluate(int port, String expr, long epochSeconds) throws Exception {
    Http.Response r = Http.get("http://127.0.0.1:" + port + "/api/v1/query?time=" + epochSeconds + "&query="
        + URLEncoder.encode(expr, StandardCharsets.UTF_8));
    JsonNode body = JSON.readTree(r.body());
    if (r.status() != 200 || !"success".equals(body.path("status").asText())) {
      return "error " + r.status() + ": " + body.path("error").asText(r.body());
    }
    JsonNode result = body.path("data").path("result");
    if (result.isEmpty()) {
      return "no data";
    }
    for (JsonNode series : result) {
      double v = Double.parseDouble(series.path("value").path(1).asText("NaN"));
      if (Double.isFinite(v)) {
        return null;
      }
    }
    return "only NaN or infinite values (" + result.size() + " series)";
  }

  /** Verified steps from two trainer ranks for about 15 s; returns when the load ended (epoch seconds). */
  private static long driveLoad(EmbeddedCluster cluster, ServiceTelemetry clientTelemetry, ReferenceAttention reference,
      BufferAllocator root) throws Exception {
    List<DistcaClient> clients = new ArrayList<>();
    try {
      for (int r = 0; r < 2; r++) {
        ClientContext cc = new ClientContext();
        cc.dispatcherPort = cluster.dispatcherPort();
        cc.job = "dashboards";
        cc.rank = r;
        cc.worldSize = 2;
        cc.shardTokens = 256;
        cc.meterRegistry = clientTelemetry.registry();
        clients.add(new DistcaClient(cc, root));
      }
      StepRunner runner = new StepRunner(clients, reference, root);
      long until = System.currentTimeMillis() + 15_000;
      long step = 0;
      while (System.currentTimeMillis() < until || step < 3) {
        runner.step(step, new int[][] {{700, 129, 37}, {513, 256, 3}}, step % 3 != 2);
        step++;
      }
      return System.currentTimeMillis() / 1000;
    } finally {
      for (DistcaClient c : clients) {
        c.close();
      }
    }
  }

  private static Process startPrometheus(Path binary, Path tmp, int port, List<Integer> targets) throws IOException {
    StringBuilder config = new StringBuilder();
    config.append("global:\n  scrape_interval: ").append(SCRAPE_SECONDS).append("s\n")
        .append("  evaluation_interval: ").append(SCRAPE_SECONDS).append("s\n")
        .append("scrape_configs:\n  - job_name: distca\n    static_configs:\n      - targets: [");
    for (int i = 0; i < targets.size(); i++) {
      config.append(i == 0 ? "" : ", ").append("\"127.0.0.1:").append(targets.get(i)).append('"');
    }
    config.append("]\n");
    Path configFile = tmp.resolve("prometheus.yml");
    Files.writeString(configFile, config.toString());
    return new ProcessBuilder(binary.toString(), "--config.file=" + configFile, "--storage.tsdb.path=" + tmp.resolve("data"),
        "--web.listen-address=127.0.0.1:" + port, "--log.level=warn")
        .redirectErrorStream(true).redirectOutput(tmp.resolve("prometheus.log").toFile()).start();
  }

  private static void awaitTargetsUp(int port, int targets) throws Exception {
    long until = System.currentTimeMillis() + 60_000;
    String last = "";
    while (System.currentTimeMillis() < until) {
      try {
        Http.Response r = Http.get("http://127.0.0.1:" + port + "/api/v1/query?query="
            + URLEncoder.encode("sum(up)", StandardCharsets.UTF_8));
        last = r.body();
        JsonNode result = JSON.readTree(r.body()).path("data").path("result");
        if (result.size() == 1 && result.get(0).path("value").path(1).asDouble() == targets) {
          return;
        }
      } catch (IOException notYet) {
        last = notYet.toString();
      }
      Thread.sleep(250);
    }
    fail("Prometheus did not scrape all " + targets + " targets within 60 s: " + last);
  }

  private static List<Path> dashboards() throws IOException {
    try (Stream<Path> s = Files.list(Environment.repoRoot().resolve("deploy/grafana/dashboards"))) {
      return s.filter(p -> p.toString().endsWith(".json")).sorted().toList();
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
