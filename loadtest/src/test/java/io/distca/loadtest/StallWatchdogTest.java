package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * A load test whose servers never finish a batch does not hang: the watchdog declares it stalled,
 * prints what every rank, server, client and thread is doing, stops the ranks, and the run fails.
 */
class StallWatchdogTest {

  /** Runs calibration (synchronous calls) normally, but never completes a batch submitted by the server. */
  private static final class HangingBackend extends ForwardingBackend {
    private final List<CompletableFuture<?>> held = new CopyOnWriteArrayList<>();

    HangingBackend() {
      super(new CpuBackend(new CpuBackendOptions().threads(1)));
    }

    @Override
    public String name() {
      return "hanging";
    }

    @Override
    public CompletableFuture<?> submitForward(AttentionBatch batch) {
      CompletableFuture<?> never = new CompletableFuture<>();
      held.add(never);
      return never;
    }

    @Override
    public CompletableFuture<?> submitBackward(AttentionBatch batch) {
      return submitForward(batch);
    }

    /** The server closes its backend before its allocator: what was held is released then. */
    @Override
    public void close() {
      for (CompletableFuture<?> f : held) {
        f.completeExceptionally(new IllegalStateException("backend closed"));
      }
      super.close();
    }
  }

  @Test
  void aRunWhoseCallsNeverCompleteIsDeclaredStalledWithADiagnosticAndFails() throws Exception {
    LoadTestOptions o = new LoadTestOptions();
    o.servers = 2;
    o.ranks = 2;
    o.tokensPerRank = 1024;
    o.headsQ = 4;
    o.headsKv = 2;
    o.headDim = 32;
    o.layers = 2;
    o.steps = 1;
    o.warmupSteps = 0;
    o.checkFraction = 0;
    o.progress = "off";
    o.backendFactory = i -> new HangingBackend();
    o.stallTimeout = Duration.ofSeconds(2);
    ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
    o.diagnostics = new PrintStream(diagnostics, true, StandardCharsets.UTF_8);

    LoadReport report = LoadTest.run(o);

    String text = diagnostics.toString(StandardCharsets.UTF_8);
    assertEquals(1, report.exitCode(), report.summary());
    assertTrue(report.failures().get(0).startsWith("stalled: no layer call completed"), report.failures().toString());
    assertTrue(text.contains("STALLED"), text);
    assertTrue(text.contains("rank 0: in the forward call of layer 0, step 0"), text);
    assertTrue(text.contains("server-0: admitted "), text);
    assertTrue(text.contains("requests in flight"), text);
    assertTrue(text.contains("client loadtest-0:"), text);
    assertTrue(text.contains("forward: "), "the call in progress: " + text);
    assertTrue(text.contains("\"distca-rebatcher\""), "the thread dump: " + text);
  }
}
