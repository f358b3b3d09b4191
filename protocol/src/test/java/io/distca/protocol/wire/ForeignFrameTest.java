package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import org.junit.jupiter.api.Test;

/**
 * A FORWARD_REQUEST frame written from docs/protocol.md by Apache Arrow's JavaScript implementation
 * (protocol/src/test/js/make-forward-request.mjs, apache-arrow 21.2.0), decoded here: the spec is
 * enough to talk to this codec, with an Arrow writer that shares no code with it.
 */
class ForeignFrameTest extends WireTestBase {

  @Test
  void frameWrittenByArrowJsDecodes() throws IOException {
    byte[] frame;
    try (InputStream in = getClass().getResourceAsStream("forward-request-arrow-js.frame")) {
      assertNotNull(in, "fixture missing");
      frame = in.readAllBytes();
    }
    try (Message m = decodeMessage(frame)) {
      assertEquals(MessageType.FORWARD_REQUEST, m.type());
      assertEquals(5, m.requestId());
      AttentionRequest request = m.meta(AttentionRequest.class);
      assertEquals("js", request.job());
      assertEquals(0.35355338f, request.scale());
      assertEquals(new TaskSpec(1, 0, 3, 0, 0, 3, true, 0), request.tasks().get(0));
      assertArrayEquals(new int[] {3}, request.kvSegmentLens());

      assertValues(m.tensors().get("q"), DType.BF16, new int[] {3, 4, 8}, i -> (i - 48) / 16f);
      assertValues(m.tensors().get("k"), DType.FP16, new int[] {3, 2, 8}, i -> (i - 24) / 8f);
      assertValues(m.tensors().get("v"), DType.FP16, new int[] {3, 2, 8}, i -> (24 - i) / 8f);
    }
  }

  private interface Values {
    float at(int index);
  }

  private static void assertValues(Tensor t, DType dtype, int[] shape, Values expected) {
    assertNotNull(t);
    assertEquals(dtype, t.dtype());
    assertArrayEquals(shape, t.shape());
    for (int i = 0; i < t.numel(); i++) {
      assertEquals(expected.at(i), t.getFloat(i), t + " element " + i);
    }
  }
}
