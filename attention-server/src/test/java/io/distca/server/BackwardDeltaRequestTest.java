package io.distca.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.testkit.SeedFrames;
import io.distca.server.backend.QuerySlice;
import java.util.SplittableRandom;
import java.util.function.BiFunction;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * Backward requests carry delta = rowsum(dO * O) instead of O (docs/protocol.md, "Backward"): the
 * validator hands each task its delta columns, refuses O-style requests by name, and checks delta
 * for NaN and infinity like any other input.
 */
class BackwardDeltaRequestTest {
  private final RequestValidator validator = new RequestValidator(RequestLimits.DEFAULT);

  /** A valid backward request with at least one query row. */
  private static Message backwardRequest(BufferAllocator root) {
    for (long seed = 1; ; seed++) {
      Message m = SeedFrames.attentionRequest(root, new SplittableRandom(seed), true, 3);
      if (m.tensors().get("q").dim(0) > 0) {
        return m;
      }
      m.close();
    }
  }

  /** Views of a valid request's tensors (owned by it) except delta. */
  private static TensorSet allButDelta(Message valid) {
    TensorSet set = new TensorSet();
    for (String name : new String[] {"q", "k", "v", "do", "lse"}) {
      set.put(name, valid.tensors().get(name).borrow());
    }
    return set;
  }

  @Test
  void eachTaskReadsItsOwnDeltaColumns() {
    try (BufferAllocator root = new RootAllocator();
        BufferAllocator outputs = root.newChildAllocator("outputs", 0, Long.MAX_VALUE);
        Message m = backwardRequest(root);
        PreparedRequest prepared = validator.prepare(m, outputs)) {
      Tensor delta = m.tensors().get("delta");
      int row = 0;
      for (QuerySlice s : prepared.slices) {
        assertEquals(null, s.o(), "a backward slice has no O");
        assertTrue(s.delta().lse() == delta, "the request's delta tensor");
        assertEquals(row, s.delta().column());
        row += s.qLen();
      }
      assertEquals(delta.dim(1), row);
    }
  }

  /**
   * What the validator throws for the valid request's metadata with {@code tensors(valid, root)};
   * checks that it allocated nothing for it.
   */
  private ProtocolException refusal(BiFunction<Message, BufferAllocator, TensorSet> tensors) {
    try (BufferAllocator root = new RootAllocator();
        BufferAllocator outputs = root.newChildAllocator("outputs", 0, Long.MAX_VALUE);
        Message valid = backwardRequest(root);
        Message m = Message.of(MessageType.BACKWARD_REQUEST, 4, valid.meta(AttentionRequest.class),
            tensors.apply(valid, root))) {
      ProtocolException e = assertThrows(ProtocolException.class, () -> validator.prepare(m, outputs));
      assertEquals(0, outputs.getAllocatedMemory(), "nothing allocated for a refused request");
      return e;
    }
  }

  @Test
  void aRequestWithOInsteadOfDeltaIsRefusedByName() {
    ProtocolException e = refusal((valid, root) -> {
      return allButDelta(valid).put("o", valid.tensors().get("q").borrow());
    });
    assertEquals(ErrorCode.INVALID_PAYLOAD, e.code());
    assertEquals("delta", e.field());
    assertTrue(e.detail().contains("instead of o"), e.detail());
  }

  @Test
  void aNonFiniteDeltaIsRefused() {
    ProtocolException e = refusal((valid, root) -> {
      TensorSet set = allButDelta(valid);
      Tensor delta = set.putNew("delta", root, DType.FP32, valid.tensors().get("delta").shape());
      delta.copyFrom(valid.tensors().get("delta"));
      delta.setFloat(delta.numel() - 1, Float.POSITIVE_INFINITY);
      return set;
    });
    assertEquals(ErrorCode.NON_FINITE_INPUT, e.code());
    assertEquals("delta", e.field());
  }

  @Test
  void deltaMustHaveTheLseShape() {
    ProtocolException e = refusal((valid, root) -> {
      TensorSet set = allButDelta(valid);
      Tensor lse = valid.tensors().get("lse");
      set.putNew("delta", root, DType.FP32, lse.dim(0), lse.dim(1) + 1); // one column too many
      return set;
    });
    assertEquals(ErrorCode.INVALID_SHAPE, e.code());
    assertEquals("delta", e.field());
  }
}
