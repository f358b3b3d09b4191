package io.distca.loadtest.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.ServerContext;
import java.time.Duration;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/** {@code distca bench server} on the CPU backend: a real server and a real echo over loopback, measured after a warm-up. */
class ServerBenchTest {
  private static final AttentionShape SHAPE = new AttentionShape(2, 1, 64, DType.BF16, AttentionShape.defaultScale(64));

  private static ServerContext cpuServer() {
    ServerContext ctx = new ServerContext();
    ctx.backend = "cpu";
    ctx.ioThreads = 2;
    return ctx;
  }

  @Test
  void measuresServerKernelAndTransportAndTheServersOwnStageTimesAfterTheWarmUp() throws Exception {
    ServerContext ctx = cpuServer();
    int[] docs = {128, 64};
    try (BufferAllocator root = new RootAllocator()) {
      ServerBench.Result r = ServerBench.run(ctx, SHAPE, docs, false, 2, 2, Duration.ofMillis(300),
          Duration.ofMillis(700), root, result -> null); // wall time: the CPU backend reports no kernel time
      assertEquals("cpu", r.backend());
      assertEquals(192, r.tokens());
      assertEquals(192L * 64 * 2 * (2 + 1 + 1), r.requestBytes(), "q (2 heads) + k and v (1 head each), bf16");
      assertTrue(r.serverRequests() > 0 && r.kernelRequests() > 0 && r.transportRequests() > 0, r.toString());
      assertTrue(r.fraction() > 0, r.toString());
      assertTrue(r.stages().requests() > 0, r.stages().toString());
      assertTrue(r.stages().latencyMs() > 0 && r.stages().backendMs() > 0, r.stages().toString());
      assertTrue(r.stages().queueMs() >= 0 && r.stages().queueMs() < r.stages().latencyMs(), r.stages().toString());
      assertFalse(r.pinned().directUsed(), "no pinned path on the CPU backend");
    }
  }

  @Test
  void backwardRequestsCarryDeltaInsteadOfOAndAreAnsweredByTheServerAndTheEcho() throws Exception {
    ServerContext ctx = cpuServer();
    int[] docs = {96, 64};
    try (BufferAllocator root = new RootAllocator()) {
      ServerBench.Result r = ServerBench.run(ctx, SHAPE, docs, true, 2, 1, Duration.ofMillis(200),
          Duration.ofMillis(500), root, result -> null);
      assertTrue(r.backward());
      long row = 160L * 64 * 2;
      assertEquals(row * (2 + 1 + 1 + 2) + 2 * 4L * 2 * 160, r.requestBytes(),
          "q and do (2 heads), k and v (1 head), lse and delta (fp32, 2 heads)");
      assertEquals(row * (2 + 1 + 1), r.responseBytes(), "dq (2 heads), dk and dv (1 head)");
      assertTrue(r.serverRequests() > 0 && r.kernelRequests() > 0 && r.transportRequests() > 0, r.toString());
      assertTrue(r.stages().requests() > 0 && r.stages().backendMs() > 0, r.stages().toString());
    }
  }
}
