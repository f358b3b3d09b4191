package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.tensor.DType;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** How the frame decoder cuts a byte stream: any chunking, several frames per read, partial headers. */
class FramingTest extends WireTestBase {
  private static final long SEED = 42;

  private byte[] tensorFrame(long requestId) {
    return encode(Message.of(MessageType.FORWARD_REQUEST, requestId, Samples.attentionRequest(),
        Samples.tensors(allocator, MessageType.FORWARD_REQUEST, DType.BF16, SEED)));
  }

  private static void assertTensorFrame(Object decoded, long requestId) {
    try (Message m = assertInstanceOf(Message.class, decoded, String.valueOf(decoded))) {
      assertEquals(MessageType.FORWARD_REQUEST, m.type());
      assertEquals(requestId, m.requestId());
      int column = 0;
      for (var e : Samples.tensorShapes(MessageType.FORWARD_REQUEST).entrySet()) {
        assertPattern(m.tensors().get(e.getKey()), DType.BF16, SEED + column++, e.getValue());
      }
    }
  }

  @ParameterizedTest
  @ValueSource(booleans = {false, true})
  void bytesFedOneAtATimeDecodeOnlyOnTheLastByte(boolean direct) {
    byte[] frame = tensorFrame(11);
    EmbeddedChannel channel = channel();
    for (int i = 0; i < frame.length - 1; i++) {
      channel.writeInbound(input(new byte[] {frame[i]}, direct));
      assertNull(channel.readInbound(), "emitted after " + (i + 1) + " of " + frame.length + " bytes");
    }
    channel.writeInbound(input(new byte[] {frame[frame.length - 1]}, direct));
    assertTensorFrame(channel.readInbound(), 11);
  }

  @Test
  void randomChunksOfAStreamOfFramesDecodeInOrder() {
    byte[] control = encode(Message.of(MessageType.PING, 1, new Ping(7)));
    byte[] stream = Frames.concat(control, tensorFrame(2), control, tensorFrame(4));
    Random random = new Random(SEED);
    for (int round = 0; round < 20; round++) {
      EmbeddedChannel channel = channel();
      for (int at = 0; at < stream.length; ) {
        int n = Math.min(stream.length - at, 1 + random.nextInt(random.nextBoolean() ? 16 : 700));
        channel.writeInbound(input(Arrays.copyOfRange(stream, at, at + n), random.nextBoolean()));
        at += n;
      }
      try (Message ping = channel.readInbound()) {
        assertEquals(new Ping(7), ping.meta());
      }
      assertTensorFrame(channel.readInbound(), 2);
      try (Message ping = channel.readInbound()) {
        assertEquals(1, ping.requestId());
      }
      assertTensorFrame(channel.readInbound(), 4);
      assertNull(channel.readInbound());
    }
  }

  @Test
  void twoFramesInOneBufferGiveTwoMessages() {
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(Frames.concat(tensorFrame(5), tensorFrame(6)), true));
    assertTensorFrame(channel.readInbound(), 5);
    assertTensorFrame(channel.readInbound(), 6);
    assertNull(channel.readInbound());
  }

  @Test
  void truncatedHeaderEmitsNothingUntilComplete() {
    byte[] frame = encode(Message.of(MessageType.PING, 9, new Ping(3)));
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(Arrays.copyOf(frame, FrameHeader.BYTES - 1)));
    assertNull(channel.readInbound(), "31 header bytes");
    channel.writeInbound(input(Arrays.copyOfRange(frame, FrameHeader.BYTES - 1, FrameHeader.BYTES)));
    assertNull(channel.readInbound(), "header without metadata");
    channel.writeInbound(input(Arrays.copyOfRange(frame, FrameHeader.BYTES, frame.length)));
    try (Message ping = channel.readInbound()) {
      assertEquals(new Ping(3), ping.meta());
    }
  }

  @Test
  void connectionClosedMidFrameEmitsNothingAndReleasesTheBytes() {
    byte[] frame = tensorFrame(8);
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(Arrays.copyOf(frame, frame.length - 3), true));
    channel.close();
    assertNull(channel.readInbound());
  }
}
