package io.distca.dispatcher.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** Runs the commands in-process, as the CLI module's subcommands will. */
class CommandsTest {

  private record Result(int exitCode, String out, String err) {}

  private static Result run(Object command, String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine commandLine = new CommandLine(command);
    commandLine.setOut(new PrintWriter(out));
    commandLine.setErr(new PrintWriter(err));
    int exitCode = commandLine.execute(args);
    return new Result(exitCode, out.toString(), err.toString());
  }

  private static JsonNode json(Result result) throws IOException {
    assertEquals(0, result.exitCode(), result.err());
    return new ObjectMapper().readTree(result.out());
  }

  @Test
  void planSamplesADistributionAndReportsLoadsBytesAndTime() throws IOException {
    JsonNode report = json(run(new PlanCommand(), "--docs", "pretrain", "--tokens-per-rank", "128k", "--servers", "16",
        "--model", "llama-34b", "--json", "--seed", "3"));
    assertEquals("distca", report.get("planner").asText());
    assertEquals("llama-34b", report.get("model").asText());
    assertEquals(16, report.get("servers").asInt());
    assertEquals(16, report.get("ranks").asInt());
    assertEquals(16L * 128 * 1024, report.get("tokens").asLong());
    assertEquals(16, report.get("serverLoads").size());
    double maxRelative = 0;
    for (JsonNode load : report.get("serverLoads")) {
      maxRelative = Math.max(maxRelative, load.get("relativeLoad").asDouble());
    }
    assertEquals(maxRelative, report.get("imbalance").asDouble(), 1e-12);
    assertTrue(report.get("imbalance").asDouble() <= 1.05);
    assertTrue(report.get("bytesMoved").asLong() >= report.get("lowerBoundBytes").asLong());
    assertTrue(report.get("planMillis").asDouble() > 0);
  }

  @Test
  void planReadsAFileOfLengthsAsOneStepsDocuments(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("step.json");
    Files.writeString(file, "[70000, 3000, 3000, 0, 12000, 500, 500, 500, 64000, 4096]");
    JsonNode report = json(run(new PlanCommand(), "--docs", file.toString(), "--servers", "4", "--ranks", "2",
        "--planner", "greedy", "--json"));
    assertEquals("greedy", report.get("planner").asText());
    assertEquals(10, report.get("documents").asInt());
    assertEquals(70000 + 6000 + 12000 + 1500 + 64000 + 4096, report.get("tokens").asLong());
    assertTrue(report.get("tokensPerRank").isNull());
    // the greedy planner's 4096-token shards of the 70K document land on several servers
    assertTrue(report.get("splitDocuments").asInt() >= 1);
  }

  @Test
  void planPrintsAHumanReadableTable() {
    Result result = run(new PlanCommand(), "--docs", "fixed:2000", "--tokens-per-rank", "16k", "--servers", "3");
    assertEquals(0, result.exitCode(), result.err());
    assertTrue(result.out().contains("imbalance (max load / target): 1.0"), result.out());
    assertTrue(result.out().contains("server-2"));
    assertTrue(result.out().contains("planning time:"));
  }

  @Test
  void badOptionsExitWithAUsageErrorNamingTheProblem() {
    Result unknownDocs = run(new PlanCommand(), "--docs", "no-such-thing", "--servers", "2");
    assertEquals(2, unknownDocs.exitCode());
    assertTrue(unknownDocs.err().contains("neither a file nor a distribution"), unknownDocs.err());
    Result badModel = run(new PlanCommand(), "--model", "gpt-5", "--servers", "2", "--tokens-per-rank", "8k");
    assertEquals(2, badModel.exitCode());
    assertTrue(badModel.err().contains("unknown model"), badModel.err());
    Result badTolerance = run(new PlanCommand(), "--tolerance", "-1", "--servers", "2", "--tokens-per-rank", "8k");
    assertEquals(2, badTolerance.exitCode());
    assertTrue(badTolerance.err().contains("tolerance"), badTolerance.err());
    Result badPlanner = run(new SimulateCommand(), "--planner", "magic", "--servers", "8", "--tokens-per-rank", "8k");
    assertEquals(2, badPlanner.exitCode());
    assertTrue(badPlanner.err().contains("unknown planner"), badPlanner.err());
  }

  @Test
  void simulateReportsEveryCellAndDrawsThePlot(@TempDir Path dir) throws IOException {
    Path plot = dir.resolve("speedup.png");
    JsonNode report = json(run(new SimulateCommand(), "--servers", "8,32", "--tokens-per-rank", "64k,256k",
        "--model", "llama-8b", "--upsample-long", "--plot", plot.toString(), "--json"));
    assertEquals(4, report.get("steps").size());
    for (JsonNode step : report.get("steps")) {
      double colocated = step.get("colocatedSeconds").asDouble();
      double disaggregated = step.get("disaggregatedSeconds").asDouble();
      assertEquals(colocated / disaggregated, step.get("speedup").asDouble(), 1e-9);
      assertEquals(step.get("servers").asInt(), step.get("ranks").asInt(), "in place: one rank per server");
      assertTrue(step.get("planImbalance").asDouble() <= 1.05);
    }
    byte[] png = Files.readAllBytes(plot);
    assertTrue(png.length > 1000);
    assertEquals((byte) 0x89, png[0]);
    assertEquals('P', png[1]);
  }

  @Test
  void simulatePoolLayoutAddsServerGpus(@TempDir Path dir) throws IOException {
    Path plot = dir.resolve("speedup.svg");
    JsonNode report = json(run(new SimulateCommand(), "--layout", "pool", "--ranks", "16", "--servers", "4,8",
        "--tokens-per-rank", "128k", "--model", "llama-8b", "--plot", plot.toString(), "--json"));
    for (JsonNode step : report.get("steps")) {
      assertEquals(16 + step.get("servers").asInt(), step.get("gpus").asInt());
      assertEquals(step.get("speedup").asDouble() * 16 / step.get("gpus").asInt(), step.get("speedupPerGpu").asDouble(), 1e-9);
    }
    assertTrue(Files.readString(plot).contains("<svg"));
  }
}
