package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.netty.channel.embedded.EmbeddedChannel;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** Framing violations: each closes the connection, is reported once, and everything after is discarded. */
class MalformedFrameTest extends WireTestBase {
  private static final long REQUEST_ID = 0x1122334455667788L;

  private byte[] ping() {
    return encode(Message.of(MessageType.PING, REQUEST_ID, new Ping(12)));
  }

  private static byte[] patched(byte[] frame, int offset, byte... bytes) {
    byte[] copy = frame.clone();
    System.arraycopy(bytes, 0, copy, offset, bytes.length);
    return copy;
  }

  /** Feeds {@code bad} followed by a good frame; expects one failure and nothing for the good frame. */
  private DecodeFailure expectFramingFailure(byte[] bad, ErrorCode code, String field) {
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(Frames.concat(bad, ping())));
    DecodeFailure failure = assertInstanceOf(DecodeFailure.class, channel.readInbound());
    assertEquals(code, failure.error().code(), failure.toString());
    assertEquals(field, failure.error().field(), failure.toString());
    assertTrue(failure.closesConnection());
    channel.writeInbound(input(ping()));
    assertNull(channel.readInbound(), "input after a framing violation must be discarded");
    return failure;
  }

  @Test
  void badMagicIsMalformedAndHasNoRequestId() {
    DecodeFailure failure = expectFramingFailure(patched(ping(), 0, (byte) 'H', (byte) 'T', (byte) 'T', (byte) 'P'),
        ErrorCode.MALFORMED_FRAME, "magic");
    assertEquals(0, failure.requestId(), "the layout is unknown, so is the request id");
    assertTrue(failure.error().getMessage().contains("0x48545450"), failure.error().getMessage());
  }

  @Test
  void otherVersionIsUnsupported() {
    DecodeFailure failure = expectFramingFailure(patched(ping(), 4, (byte) 2), ErrorCode.UNSUPPORTED_VERSION, "version");
    assertEquals(0, failure.requestId());
    assertTrue(failure.error().detail().contains("version 2"), failure.error().detail());
  }

  @Test
  void reservedFlagBitsAreMalformed() {
    DecodeFailure failure = expectFramingFailure(patched(ping(), 6, (byte) 0x80, (byte) 0), ErrorCode.MALFORMED_FRAME, "flags");
    assertEquals(REQUEST_ID, failure.requestId());
  }

  @Test
  void payloadFlagWithoutPayloadIsMalformed() {
    expectFramingFailure(patched(ping(), 6, (byte) 0, (byte) 1), ErrorCode.MALFORMED_FRAME, "flags");
  }

  @Test
  void payloadWithoutPayloadFlagIsMalformed() {
    byte[] frame = Frames.frame(MessageType.PING.code(), 0, REQUEST_ID, "{\"sent_nanos\":1}".getBytes(), new byte[8]);
    expectFramingFailure(frame, ErrorCode.MALFORMED_FRAME, "flags");
  }

  @Test
  void nonzeroReservedHeaderBytesAreMalformed() {
    expectFramingFailure(patched(ping(), 31, (byte) 1), ErrorCode.MALFORMED_FRAME, "reserved");
  }

  @Test
  void nonzeroPaddingIsMalformed() {
    byte[] frame = ping();
    int metaLength = Frames.metaLength(frame);
    assertNotEquals(0, (32 + metaLength) % 8, "the sample needs padding");
    DecodeFailure failure = expectFramingFailure(patched(frame, 32 + metaLength, (byte) 0xff), ErrorCode.MALFORMED_FRAME, "padding");
    assertEquals(REQUEST_ID, failure.requestId());
  }

  @Test
  void oversizeFrameIsRejectedFromTheHeaderAloneBeforeBuffering() {
    EmbeddedChannel channel = channel(options().maxFrameBytes(64 * 1024));
    byte[] header = Arrays.copyOf(Frames.frame(MessageType.FORWARD_REQUEST.code(), FrameHeader.FLAG_PAYLOAD_PRESENT, 77,
        new byte[100], new byte[0]), FrameHeader.BYTES);
    ByteBuffer.wrap(header).putInt(20, 0x7fff_fff0); // declares a ~2 GiB payload
    channel.writeInbound(input(header));
    DecodeFailure failure = assertInstanceOf(DecodeFailure.class, channel.readInbound(), "failure after 32 bytes");
    assertEquals(ErrorCode.FRAME_TOO_LARGE, failure.error().code());
    assertEquals(77, failure.requestId());
    assertTrue(failure.closesConnection());
    assertTrue(failure.error().detail().contains("65536"), failure.error().detail());
    channel.writeInbound(input(new byte[4096]));
    assertNull(channel.readInbound());
  }

  @Test
  void frameOfExactlyTheLimitPassesAndOneMoreByteFails() {
    long limit = WireOptions.MIN_MAX_FRAME_BYTES;
    String filler = "x".repeat((int) limit - FrameHeader.BYTES - "{\"sent_nanos\":1,\"\":\"\"}".length());
    byte[] atLimit = Frames.frame(MessageType.PING.code(), 3, "{\"sent_nanos\":1,\"" + filler + "\":\"\"}");
    assertEquals(limit, atLimit.length);
    Object decoded = decodeOneWith(limit, atLimit);
    DecodeFailure unknownProperty = assertInstanceOf(DecodeFailure.class, decoded);
    assertEquals(ErrorCode.INVALID_METADATA, unknownProperty.error().code(), "framing accepted it; the JSON is what fails");

    byte[] overLimit = Frames.frame(MessageType.PING.code(), 3, "{\"sent_nanos\":1,\"" + filler + "y\":\"\"}");
    DecodeFailure tooLarge = assertInstanceOf(DecodeFailure.class, decodeOneWith(limit, overLimit));
    assertEquals(ErrorCode.FRAME_TOO_LARGE, tooLarge.error().code());
  }

  private Object decodeOneWith(long maxFrameBytes, byte[] frame) {
    EmbeddedChannel channel = channel(options().maxFrameBytes(maxFrameBytes));
    channel.writeInbound(input(frame));
    Object decoded = channel.readInbound();
    assertNull(channel.readInbound());
    return decoded;
  }

  @Test
  void failureAnswersWithAnErrorFrameEchoingTheRequestId() {
    DecodeFailure failure = expectFramingFailure(patched(ping(), 6, (byte) 0x40, (byte) 0), ErrorCode.MALFORMED_FRAME, "flags");
    try (Message reply = decodeMessage(encode(failure.toErrorMessage()))) {
      assertEquals(MessageType.ERROR, reply.type());
      assertEquals(REQUEST_ID, reply.requestId());
      ErrorReply error = reply.meta(ErrorReply.class);
      assertEquals(ErrorCode.MALFORMED_FRAME, error.code());
      assertEquals("flags", error.field());
      assertTrue(error.message().contains("0x4000"), error.message());
    }
  }
}
