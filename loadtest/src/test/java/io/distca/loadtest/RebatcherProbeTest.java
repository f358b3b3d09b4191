package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.TensorSet;
import io.distca.server.RebatcherProbe;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The benchmark hook RebatcherBenchmark measures: requests offered together are fused into fewer
 * backend calls than requests, with fusing off each gets its own, a bad request is refused by name,
 * and everything is released (the root allocator closes clean).
 */
class RebatcherProbeTest {
  private static final int TOKENS = 64;

  @Test
  void requestsOfferedTogetherShareBackendCallsAndAreReleased() throws Exception {
    try (BufferAllocator root = new RootAllocator();
        CpuBackend backend = new CpuBackend(new CpuBackendOptions().threads(1))) {
      try (RebatcherProbe fusing = new RebatcherProbe(backend, 50_000, 64, root)) {
        fusing.submit(requests(root, 16, TOKENS)).get(30, TimeUnit.SECONDS);
        assertTrue(fusing.batches() < 16, "16 requests offered at once ran in " + fusing.batches() + " calls");
      }
      try (RebatcherProbe single = new RebatcherProbe(backend, 0, 1, root)) {
        single.submit(requests(root, 5, TOKENS)).get(30, TimeUnit.SECONDS);
        assertEquals(5, single.batches());
        SplittableRandom rnd = new SplittableRandom(1);
        List<Message> bad = List.of(request(root, rnd, TOKENS, TOKENS),
            request(root, rnd, TOKENS, TOKENS + 1), // keys beyond their segment
            request(root, rnd, TOKENS, TOKENS));
        ProtocolException e = assertThrows(ProtocolException.class, () -> single.submit(bad));
        assertEquals(ErrorCode.INVALID_CU_SEQLENS, e.code());
        assertEquals(5, single.batches(), "nothing of a refused submission ran");
      }
    }
  }

  private static List<Message> requests(BufferAllocator root, int count, int tokens) {
    SplittableRandom rnd = new SplittableRandom(3);
    List<Message> out = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      out.add(request(root, rnd, tokens, tokens));
    }
    return out;
  }

  private static Message request(BufferAllocator root, SplittableRandom rnd, int tokens, int kvLen) {
    TensorSet set = new TensorSet();
    set.put("q", CheckedStep.random(root, rnd, DType.BF16, tokens, 2, 32));
    set.put("k", CheckedStep.random(root, rnd, DType.BF16, tokens, 1, 32));
    set.put("v", CheckedStep.random(root, rnd, DType.BF16, tokens, 1, 32));
    AttentionRequest meta = new AttentionRequest("probe", 0, 0, 2, 1, 32, "bf16", 0.17f,
        List.of(new TaskSpec(0, 0, tokens, 0, 0, kvLen, true, kvLen - tokens)), new int[] {tokens});
    return Message.of(MessageType.FORWARD_REQUEST, 0, meta, set);
  }
}
