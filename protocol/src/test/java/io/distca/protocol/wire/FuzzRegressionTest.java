package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Inputs the fuzzers ({@link CodecFuzzTest}, the attention server's request fuzz test) found
 * mishandled, minimized, so that each fix stays fixed.
 */
class FuzzRegressionTest extends WireTestBase {

  /**
   * Found by CodecFuzzTest (a splice put {@code "{\0\0\0"} at the start of a PING's metadata):
   * Jackson took the NUL bytes for UTF-32, threw a CharConversionException, and the frame was
   * answered INTERNAL instead of INVALID_METADATA. A UTF-16 byte order mark was worse: Jackson read
   * the metadata as UTF-16 and accepted it, although the protocol's JSON is UTF-8 only.
   */
  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"utf-32-looking", "utf-16le-bom", "utf-16be-bom", "utf-16le"})
  void metadataInAnotherEncodingIsInvalidMetadataNotInternal(String encoding) {
    byte[] meta = switch (encoding) {
      case "utf-32-looking" -> new byte[] {'{', 0, 0, 0, 'd', 'i', 's', 't', 'r', 'i', 'd', '}'};
      case "utf-16le-bom" -> withBom(new byte[] {(byte) 0xff, (byte) 0xfe}, "{\"sent_nanos\":5}", StandardCharsets.UTF_16LE);
      case "utf-16be-bom" -> withBom(new byte[] {(byte) 0xfe, (byte) 0xff}, "{\"sent_nanos\":5}", StandardCharsets.UTF_16BE);
      default -> "{\"sent_nanos\":5}".getBytes(StandardCharsets.UTF_16LE);
    };
    DecodeFailure failure = decodeFailure(Frames.frame(MessageType.PING.code(), 0, 7, meta, new byte[0]),
        ErrorCode.INVALID_METADATA);
    assertNull(failure.error().field());
    assertTrue(failure.error().detail().contains("UTF-8"), failure.error().detail());
    assertFalse(failure.closesConnection());
  }

  /**
   * Found while checking the fuzzers' outcomes against section 3 ("no other field may" be null):
   * Jackson left a JSON null in any reference field, so the codec accepted {@code "dtype": null}
   * or {@code "tasks": [null]} and left the service to trip over it.
   */
  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', value = {
      "\"dtype\":\"bf16\"                         | \"dtype\":null                     | dtype",
      "\"job\":\"job-a\"                          | \"job\":null                       | job",
      "\"kv_segment_lens\":[4,3]                  | \"kv_segment_lens\":null           | kv_segment_lens",
      "\"tasks\":[{                               | \"tasks\":[null,{                  | tasks[0]",
  })
  void nullWhereTheSpecAllowsNoneIsInvalidMetadataNamingTheField(String find, String replace, String field) {
    byte[] frame = encode(Message.of(MessageType.FORWARD_REQUEST, 3, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.BF16, 1)));
    String meta = Frames.meta(frame).replace(find.strip(), replace.strip());
    DecodeFailure failure = decodeFailure(Frames.withMeta(frame, meta), ErrorCode.INVALID_METADATA);
    assertEquals(field, failure.error().field());
    assertEquals(3, failure.requestId());
  }

  @Test
  void nullableFieldsStayNullable() {
    String hello = "{\"protocol_version\":1,\"role\":\"trainer\",\"peer_name\":\"p\",\"token\":null}";
    try (Message m = decodeMessage(Frames.frame(MessageType.HELLO.code(), 1, hello))) {
      assertNull(m.meta(Hello.class).token());
    }
    String error = "{\"code\":\"INTERNAL\",\"message\":\"m\",\"field\":null,\"retry_after_ms\":0}";
    try (Message m = decodeMessage(Frames.frame(MessageType.ERROR.code(), 1, error))) {
      assertNull(m.meta(ErrorReply.class).field());
    }
  }

  private static byte[] withBom(byte[] bom, String json, Charset charset) {
    return Frames.concat(bom, json.getBytes(charset));
  }
}
