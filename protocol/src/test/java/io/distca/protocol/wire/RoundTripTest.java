package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

class RoundTripTest extends WireTestBase {

  static Stream<MessageType> controlTypes() {
    return Arrays.stream(MessageType.values()).filter(t -> !t.carriesTensors());
  }

  static Stream<Arguments> tensorTypesAndDtypes() {
    return Arrays.stream(MessageType.values())
        .filter(MessageType::carriesTensors)
        .flatMap(t -> Arrays.stream(DType.values()).map(d -> Arguments.of(t, d)));
  }

  @ParameterizedTest
  @MethodSource("controlTypes")
  void controlMessageRoundTrips(MessageType type) {
    Object meta = Samples.meta(type);
    long requestId = 0x8000_0000_0000_0000L | type.code();
    try (Message decoded = decodeMessage(encode(Message.of(type, requestId, meta)))) {
      assertEquals(type, decoded.type());
      assertEquals(requestId, decoded.requestId());
      assertEquals(0, decoded.flags());
      assertNull(decoded.tensors());
      assertEquals(meta.getClass(), decoded.meta().getClass());
      assertEquals(new String(Json.toBytes(meta)), new String(Json.toBytes(decoded.meta())));
      if (!(meta instanceof PlanRequest)) {
        assertEquals(meta, decoded.meta()); // records without arrays compare by value
      }
    }
  }

  @Test
  void arrayFieldsSurvive() {
    PlanRequest sent = (PlanRequest) Samples.meta(MessageType.PLAN_REQUEST);
    try (Message decoded = decodeMessage(encode(Message.of(MessageType.PLAN_REQUEST, 1, sent)))) {
      PlanRequest received = decoded.meta(PlanRequest.class);
      assertArrayEquals(sent.docLengths(), received.docLengths());
      assertEquals(sent.shardTokens(), received.shardTokens());
      assertEquals(sent.causal(), received.causal());
    }
  }

  @ParameterizedTest
  @MethodSource("tensorTypesAndDtypes")
  void tensorMessageRoundTrips(MessageType type, DType dtype) {
    long seed = type.code() * 31L + dtype.ordinal();
    Message sent = Message.of(type, 77, Samples.meta(type), Samples.tensors(allocator, type, dtype, seed));
    byte[] frame = encode(sent);
    assertEquals(0, allocator.getAllocatedMemory(), "encoder closed the sent message after the write");

    try (Message decoded = decodeMessage(frame)) {
      assertEquals(type, decoded.type());
      assertEquals(77, decoded.requestId());
      assertEquals(FrameHeader.FLAG_PAYLOAD_PRESENT, decoded.flags());
      assertEquals(new String(Json.toBytes(Samples.meta(type))), new String(Json.toBytes(decoded.meta())));
      TensorSet tensors = decoded.tensors();
      Map<String, int[]> shapes = Samples.tensorShapes(type);
      assertEquals(List.copyOf(shapes.keySet()), List.copyOf(tensors.asMap().keySet()), "names in wire order");
      int column = 0;
      for (Map.Entry<String, int[]> e : shapes.entrySet()) {
        assertPattern(tensors.get(e.getKey()), Samples.dtypeOf(e.getKey(), dtype), seed + column++, e.getValue());
      }
    }
  }

  @Test
  void attentionRequestMetadataIsTyped() {
    Message sent = Message.of(MessageType.FORWARD_REQUEST, 5, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.BF16, 1));
    try (Message decoded = decodeMessage(encode(sent))) {
      AttentionRequest request = decoded.meta(AttentionRequest.class);
      assertEquals(0.35355338f, request.scale());
      assertArrayEquals(new int[] {4, 3}, request.kvSegmentLens());
      assertEquals(new TaskSpec(9002, 1, 2, 1, 1, 2, false, 0), request.tasks().get(1));
    }
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void zeroElementAndScalarTensorsRoundTrip(DType dtype) {
    int[][] shapes = {{0, 4, 8}, {3, 0, 2}, {0}, {}, {1}, {2, 3}};
    TensorSet set = new TensorSet();
    for (int i = 0; i < shapes.length; i++) {
      set.put("t" + i, patternTensor(allocator, dtype, i, shapes[i]));
    }
    try (Message decoded = decodeMessage(encode(Message.of(MessageType.FORWARD_RESPONSE, 9, Samples.meta(MessageType.FORWARD_RESPONSE), set)))) {
      for (int i = 0; i < shapes.length; i++) {
        Tensor t = decoded.tensors().get("t" + i);
        assertNotNull(t, "t" + i);
        assertPattern(t, dtype, i, shapes[i]);
      }
    }
  }

  @Test
  void emptyTensorSetIsAValidPayload() {
    try (Message decoded = decodeMessage(encode(Message.of(MessageType.FORWARD_RESPONSE, 3, Samples.meta(MessageType.FORWARD_RESPONSE), new TensorSet())))) {
      assertEquals(0, decoded.tensors().size());
    }
  }

  @Test
  void tensorViewsOfASlicedTensorSendOnlyTheSlice() {
    Tensor whole = patternTensor(allocator, DType.FP32, 4, 6, 2);
    TensorSet set = new TensorSet(whole).put("o", whole.sliceRows(2, 5));
    try (Message decoded = decodeMessage(encode(Message.of(MessageType.FORWARD_RESPONSE, 3, Samples.meta(MessageType.FORWARD_RESPONSE), set)))) {
      Tensor o = decoded.tensors().get("o");
      assertArrayEquals(new int[] {3, 2}, o.shape());
      for (int i = 0; i < 6; i++) {
        assertEquals(Float.floatToRawIntBits(patternValue(4, 4 + i)), Float.floatToRawIntBits(o.getFloat(i)));
      }
    }
  }

  @Test
  void decodedMessageClosesIdempotently() {
    Message decoded = decodeMessage(encode(Message.of(MessageType.FORWARD_REQUEST, 1, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.FP16, 2))));
    decoded.close();
    decoded.close();
    assertEquals(0, allocator.getAllocatedMemory());
  }
}
