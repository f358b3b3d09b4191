package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code distca loadtest}: a tiny run prints a JSON report and writes the HTML one; bad options are usage errors. */
class LoadtestCommandTest {

  @Test
  void tinyRunPrintsJsonAndWritesTheHtmlReport(@TempDir Path dir) throws Exception {
    StringWriter out = new StringWriter();
    CommandLine cli = Distca.commandLine().setOut(new PrintWriter(out));
    int rc = cli.execute("loadtest", "--json", "--servers", "1", "--backend", "cpu", "--threads", "1", "--ranks", "1",
        "--tokens-per-rank", "1k", "--heads", "2", "--kv-heads", "1", "--head-dim", "32", "--layers", "1", "--steps", "1",
        "--warmup", "0", "--workload", "uniform:100:400", "--progress", "off", "--report", dir.toString());
    assertEquals(0, rc, out.toString());
    JsonNode report = new ObjectMapper().readTree(out.toString());
    assertTrue(report.get("passed").asBoolean());
    assertEquals(1024, report.at("/config/tokens_per_rank").asInt());
    assertEquals("uniform:100:400", report.at("/config/workload").asText());
    assertEquals(1, report.at("/totals/forward_calls").asLong());
    assertTrue(Files.size(dir.resolve("index.html")) > 0);
    assertTrue(Files.size(dir.resolve("latency-cdf.png")) > 0);
  }

  @Test
  void badOptionsAreUsageErrorsThatNameTheProblem() {
    StringWriter err = new StringWriter();
    CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
    assertEquals(2, cli.execute("loadtest", "--duration", "soon"));
    assertTrue(err.toString().contains("--duration: 'soon'"), err.toString());
    err.getBuffer().setLength(0);
    assertEquals(2, cli.execute("loadtest", "--tokens-per-rank", "2M"));
    assertTrue(err.toString().contains("--tokens-per-rank"), err.toString());
    err.getBuffer().setLength(0);
    assertEquals(2, cli.execute("loadtest", "--dtype", "int8"));
    assertTrue(err.toString().contains("--dtype"), err.toString());
  }

  @Test
  void durationsInEveryAcceptedForm() {
    assertEquals(Duration.ofSeconds(30), LoadtestCommand.parseDuration("30s"));
    assertEquals(Duration.ofMinutes(5), LoadtestCommand.parseDuration("5m"));
    assertEquals(Duration.ofHours(1), LoadtestCommand.parseDuration("1h"));
    assertEquals(Duration.ofMillis(500), LoadtestCommand.parseDuration("500ms"));
    assertEquals(Duration.ofMinutes(1), LoadtestCommand.parseDuration("PT1M"));
  }
}
