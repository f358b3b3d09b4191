package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.QuerySlice;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import javax.imageio.ImageIO;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The load-test harness against embedded clusters on loopback: a short run completes, its JSON
 * report parses back and its counts add up, the HTML report's charts are real images; a server
 * whose backend perturbs its results is caught by the spot check and fails the run.
 */
class LoadTestTest {

  /** Small enough for two shared cores: 2 ranks x 2048 tokens, heads 4/2, head_dim 32, 2 layers. */
  private static LoadTestOptions small() {
    LoadTestOptions o = new LoadTestOptions();
    o.servers = 2;
    o.backend = "cpu";
    o.computeThreads = 1;
    o.ranks = 2;
    o.tokensPerRank = 2048;
    o.shardTokens = 512;
    o.headsQ = 4;
    o.headsKv = 2;
    o.headDim = 32;
    o.layers = 2;
    o.steps = 2;
    o.warmupSteps = 1;
    o.checkFraction = 0.5;
    o.progress = "off";
    return o;
  }

  @Test
  void shortRunCompletesItsReportParsesAndItsCountsAddUp(@TempDir Path dir) throws Exception {
    LoadTestOptions o = small();
    LoadReport report = LoadTest.run(o);
    assertTrue(report.passed(), report.summary());
    assertEquals(0, report.exitCode());

    LoadReport parsed = LoadReport.fromJson(report.toJson());
    JsonNode json = new ObjectMapper().readTree(report.toJson());
    LoadReport.Requests req = parsed.requests();
    assertEquals(req.started(), req.answered() + req.failed(), "request attempts = answered + failed");
    assertEquals(req.tasksSent(), req.tasksAnswered() + req.tasksFailed(), "tasks sent = answered + failed");
    assertEquals(json.at("/requests/tasks_sent").asLong(),
        json.at("/requests/tasks_answered").asLong() + json.at("/requests/tasks_failed").asLong());
    assertTrue(req.answered() > 0);

    LoadReport.Totals t = parsed.totals();
    long callsPerPass = (long) o.steps * o.ranks * o.layers;
    assertEquals(o.steps, t.steps());
    assertEquals(callsPerPass, t.forwardCalls());
    assertEquals(callsPerPass, t.backwardCalls());
    assertEquals(0, t.failedCalls());
    // every token of every measured step, counted once per step
    assertEquals((double) o.steps * o.ranks * o.tokensPerRank, t.tokens(), 1e-6);
    assertEquals(t.requestsAnswered(), parsed.latencyMs().get("kernel").count());
    assertEquals(o.steps * o.ranks, parsed.latencyMs().get("plan").count());
    assertEquals(o.steps, parsed.latencyMs().get("step").count());
    for (String phase : List.of("plan", "send", "queue", "kernel", "receive", "merge")) {
      LoadReport.Latency l = parsed.latencyMs().get(phase);
      assertTrue(l.p50() <= l.p90() && l.p90() <= l.p99() && l.p99() <= l.p999() && l.p999() <= l.max(), phase);
      assertFalse(l.cdf().isEmpty(), phase);
    }
    assertTrue(parsed.latencyMs().get("kernel").max() > 0);

    assertEquals(2, parsed.servers().size());
    double served = parsed.servers().stream().mapToDouble(LoadReport.ServerLoad::flops).sum();
    assertEquals(t.flops(), served, 1e-6 * t.flops(), "the servers' FLOPs are the calls' FLOPs");
    assertEquals(t.bytesSent(), parsed.servers().stream().mapToLong(LoadReport.ServerLoad::bytesIn).sum());
    assertEquals(o.steps, parsed.steps().size());
    for (LoadReport.Ratio r : List.of(parsed.roofline().transport(), parsed.roofline().compute(),
        parsed.roofline().step())) {
      assertTrue(r.ratio() > 0 && Double.isFinite(r.ratio()), r.toString());
    }
    assertTrue(parsed.spotChecks().checked() >= o.ranks, "each rank's first layer is always checked");
    assertEquals(0, parsed.spotChecks().failed());

    Path index = HtmlReport.write(report, dir);
    assertTrue(Files.readString(index).contains("latency-cdf.png"));
    for (String chart : HtmlReport.CHARTS) {
      BufferedImage image = ImageIO.read(dir.resolve(chart).toFile());
      assertTrue(image != null && image.getWidth() > 100 && image.getHeight() > 100, chart);
    }
    assertEquals(report.toJson(), Files.readString(dir.resolve("report.json")));
  }

  @Test
  void aServerThatPerturbsItsResultsIsCaughtAndFailsTheRun() throws Exception {
    LoadTestOptions o = small();
    o.steps = 1;
    o.warmupSteps = 0;
    o.layers = 1;
    o.checkFraction = 1.0;
    o.backendFactory = i -> i == 1 ? new PerturbingBackend(new CpuBackend(new CpuBackendOptions().threads(1)))
        : new CpuBackend(new CpuBackendOptions().threads(1));
    LoadReport report = LoadTest.run(o);
    assertFalse(report.passed(), report.summary());
    assertEquals(1, report.exitCode());
    assertEquals(o.ranks, report.spotChecks().checked());
    assertTrue(report.spotChecks().failed() > 0);
    assertTrue(report.spotChecks().maxError().get("o") > o.tolerance, report.spotChecks().toString());
    assertTrue(report.failures().get(0).contains("differ from the local reference"), report.failures().toString());
    assertTrue(report.requests().answered() > 0, "the wrong server answered: it looked healthy on the wire");
  }

  @Test
  void runsForADurationAgainstAnExistingDispatcher() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      EmbeddedCluster.Options co = EmbeddedCluster.Options.cpu(2);
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
        cluster.awaitReady(20_000);
        LoadTestOptions o = small();
        o.dispatcher = "127.0.0.1:" + cluster.dispatcherPort();
        o.duration = Duration.ofMillis(300);
        o.warmupSteps = 0;
        o.backward = false;
        o.layers = 1;
        o.tokensPerRank = 1024;
        LoadReport report = LoadTest.run(o);
        assertTrue(report.passed(), report.summary());
        assertEquals("external", report.cluster().mode());
        assertEquals(0.3, report.config().durationSeconds(), 1e-9);
        assertTrue(report.totals().steps() >= 1);
        assertEquals(report.totals().steps() * o.ranks, report.totals().forwardCalls());
        assertEquals(0, report.totals().backwardCalls());
        // the servers come from the plans, their ceilings from their own start-up calibration
        assertEquals(2, report.servers().size());
        for (LoadReport.ServerLoad s : report.servers()) {
          assertTrue(s.ceilingFlopsPerSecond() > 0, s.toString());
        }
        long served = 0;
        for (io.distca.server.AttentionServer s : cluster.servers()) {
          served += s.tasksServed();
        }
        assertEquals(report.requests().tasksAnswered(), served, "every task the clients counted, the servers served");
      }
    }
  }

  @Test
  void theSameSeedMakesTheSameWorkload() {
    AttentionShape shape = new AttentionShape(2, 1, 16, DType.BF16, AttentionShape.defaultScale(16));
    DocLengthDistribution docs = DocLengthDistribution.pretrain();
    try (BufferAllocator root = new RootAllocator();
        StepInput a = StepInput.generate(docs, 4096, shape, true, true, 7, 3, 1, root);
        StepInput b = StepInput.generate(docs, 4096, shape, true, true, 7, 3, 1, root);
        StepInput otherRank = StepInput.generate(docs, 4096, shape, true, true, 7, 3, 2, root)) {
      assertArrayEquals(a.batch.docLengths(), b.batch.docLengths());
      assertEquals(4096, a.tokens());
      for (long i = 0; i < a.batch.q().numel(); i += 97) {
        assertEquals(a.batch.q().getFloat(i), b.batch.q().getFloat(i));
        assertEquals(a.dO.getFloat(i), b.dO.getFloat(i));
      }
      assertFalse(java.util.Arrays.equals(a.batch.docLengths(), otherRank.batch.docLengths())
          && a.batch.q().getFloat(0) == otherRank.batch.q().getFloat(0), "another rank gets other inputs");
    }
  }

  @Test
  void failedAttemptsAreGroupedByKind() {
    assertEquals("ProtocolException: OVERLOADED", LoadMetrics.errorKind(
        "io.distca.protocol.message.ProtocolException: OVERLOADED: server overloaded: 2147483648 bytes in flight"));
    assertEquals("TimeoutException", LoadMetrics.errorKind("java.util.concurrent.TimeoutException"));
  }

  @Test
  void theProgressBarStaysQuietWithoutATerminal() {
    // surefire's forked JVM has no console, like a pipe or a CI log
    try (LiveProgress auto = LiveProgress.start("auto", "t", 10, "calls");
        LiveProgress off = LiveProgress.start("off", "t", 10, "calls")) {
      assertFalse(auto.visible());
      assertFalse(off.visible());
      auto.update(() -> new LiveProgress.Snapshot(5, "x")); // a quiet bar ignores updates
    }
  }

  @Test
  void badOptionsAreRefusedByName() {
    LoadTestOptions tooLong = small();
    tooLong.tokensPerRank = 600_000;
    assertTrue(assertThrows(IllegalArgumentException.class, tooLong::conclude).getMessage().contains("tokens per rank"));
    LoadTestOptions badAddress = small();
    badAddress.dispatcher = "nohost";
    assertTrue(assertThrows(IllegalArgumentException.class, badAddress::conclude).getMessage().contains("host:port"));
    LoadTestOptions badWorkload = small();
    badWorkload.workload = "zipf";
    assertTrue(assertThrows(IllegalArgumentException.class, badWorkload::conclude).getMessage().contains("zipf"));
    LoadTestOptions badShape = small();
    badShape.headsKv = 3;
    assertTrue(assertThrows(IllegalArgumentException.class, badShape::conclude).getMessage().contains("model shape"));
    LoadTestOptions badCheck = small();
    badCheck.checkBackend = "gpu";
    assertTrue(assertThrows(IllegalArgumentException.class, badCheck::conclude).getMessage().contains("check backend"));
    LoadTestOptions model = small();
    model.model = "llama-8b";
    model.layers = 0;
    model.conclude();
    assertEquals(32, model.layers);
    assertEquals(32, model.shape().headsQ());
  }

  /** A backend that computes correctly and then nudges one value of every slice: a wrong server. */
  private static final class PerturbingBackend extends ForwardingBackend {
    PerturbingBackend(AttentionBackend inner) {
      super(inner);
    }

    @Override
    public void forward(AttentionBatch batch) {
      inner.forward(batch);
      for (QuerySlice s : batch.slices()) {
        if (s.q().dim(0) > 0) {
          s.o().setFloat(0, s.o().getFloat(0) + 1f);
        }
      }
    }

    @Override
    public void backward(AttentionBatch batch) {
      inner.backward(batch);
      for (QuerySlice s : batch.slices()) {
        if (s.q().dim(0) > 0) {
          s.dq().setFloat(0, s.dq().getFloat(0) + 1f);
        }
      }
    }
  }
}
