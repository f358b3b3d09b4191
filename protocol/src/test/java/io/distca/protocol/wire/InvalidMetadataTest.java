package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.tensor.DType;
import io.netty.channel.embedded.EmbeddedChannel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Frames that are well framed but carry a bad type or bad JSON: typed error, connection stays usable. */
class InvalidMetadataTest extends WireTestBase {
  private static final int PING = MessageType.PING.code();

  private DecodeFailure failure(byte[] frame, ErrorCode code, String field) {
    DecodeFailure failure = decodeFailure(frame, code);
    assertEquals(field, failure.error().field(), failure.toString());
    assertFalse(failure.closesConnection());
    return failure;
  }

  @Test
  void unknownTypeFailsThatFrameOnlyAndTheNextFrameDecodes() {
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(Frames.concat(Frames.frame(99, 31, "{}"), encode(Message.of(MessageType.PING, 32, new Ping(5))))));
    DecodeFailure failure = assertInstanceOf(DecodeFailure.class, channel.readInbound());
    assertEquals(ErrorCode.UNKNOWN_MESSAGE_TYPE, failure.error().code());
    assertEquals("type", failure.error().field());
    assertEquals(31, failure.requestId());
    assertNull(failure.type());
    assertTrue(failure.error().detail().contains("99"), failure.error().detail());
    assertFalse(failure.closesConnection());
    try (Message next = channel.readInbound()) {
      assertEquals(32, next.requestId());
    }
  }

  @Test
  void unknownTypeWithPayloadIsReleased() {
    failure(Frames.frame(200, 4, "{}", new byte[4000]), ErrorCode.UNKNOWN_MESSAGE_TYPE, "type");
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', value = {
      "truncated JSON          | {\"sent_nanos\": ",
      "not JSON                | sent_nanos=5",
      "trailing tokens         | {\"sent_nanos\":1} {}",
      "array instead of object | [1]",
  })
  void invalidJsonIsInvalidMetadata(String why, String json) {
    DecodeFailure failure = decodeFailure(Frames.frame(PING, 8, json), ErrorCode.INVALID_METADATA);
    assertEquals(8, failure.requestId());
    assertEquals(MessageType.PING, failure.type());
  }

  @Test
  void emptyMetadataIsInvalid() {
    DecodeFailure failure = failure(Frames.frame(PING, 8, ""), ErrorCode.INVALID_METADATA, null);
    assertTrue(failure.error().detail().contains("empty"), failure.error().detail());
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', value = {
      "missing field      | {}                                   | sent_nanos",
      "unknown field      | {\"sent_nanos\":1,\"sentNanos\":2}   | sentNanos",
      "string for number  | {\"sent_nanos\":\"5\"}               | sent_nanos",
      "fraction for long  | {\"sent_nanos\":1.5}                 | sent_nanos",
      "null for primitive | {\"sent_nanos\":null}                | sent_nanos",
      "duplicate field    | {\"sent_nanos\":1,\"sent_nanos\":2}  | sent_nanos",
  })
  void badFieldsAreNamed(String why, String json, String field) {
    failure(Frames.frame(PING, 8, json), ErrorCode.INVALID_METADATA, field);
  }

  @Test
  void unknownEnumConstantIsNamed() {
    failure(Frames.frame(MessageType.ERROR.code(), 8, "{\"code\":\"NOPE\",\"message\":\"m\",\"field\":null,\"retry_after_ms\":0}"),
        ErrorCode.INVALID_METADATA, "code");
  }

  @Test
  void missingNestedFieldIsNamedWithItsPath() {
    String json = new String(Json.toBytes(Samples.attentionRequest())).replace("\"q_len\":2,", "");
    byte[] frame = encode(Message.of(MessageType.FORWARD_REQUEST, 6, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.FP32, 1)));
    DecodeFailure failure = failure(Frames.withMeta(frame, json), ErrorCode.INVALID_METADATA, "tasks[1].q_len");
    assertEquals(6, failure.requestId());
    assertEquals(MessageType.FORWARD_REQUEST, failure.type());
  }

  @Test
  void wrongNestedTypeIsNamedWithItsPath() {
    String json = new String(Json.toBytes(Samples.attentionRequest())).replace("\"kv_segment_lens\":[4,3]", "\"kv_segment_lens\":[4,\"x\"]");
    byte[] frame = encode(Message.of(MessageType.FORWARD_REQUEST, 6, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.FP32, 1)));
    failure(Frames.withMeta(frame, json), ErrorCode.INVALID_METADATA, "kv_segment_lens[1]");
  }

  @Test
  void controlMessageWithPayloadIsInvalidPayload() {
    failure(Frames.frame(PING, 8, "{\"sent_nanos\":1}", new byte[16]), ErrorCode.INVALID_PAYLOAD, null);
  }

  @Test
  void tensorMessageWithoutPayloadIsInvalidPayload() {
    String json = new String(Json.toBytes(Samples.attentionRequest()));
    DecodeFailure failure = failure(Frames.frame(MessageType.FORWARD_REQUEST.code(), 8, json), ErrorCode.INVALID_PAYLOAD, null);
    assertTrue(failure.error().detail().contains("must carry a tensor payload"), failure.error().detail());
  }
}
