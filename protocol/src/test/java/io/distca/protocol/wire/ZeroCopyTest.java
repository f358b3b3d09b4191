package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.channel.ChannelFuture;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.EncoderException;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.junit.jupiter.api.Test;

/** Tensor bytes are never copied by the codec, and who releases what, when. */
class ZeroCopyTest extends WireTestBase {

  private Message forwardRequest(BufferAllocator tensors, long requestId) {
    return Message.of(MessageType.FORWARD_REQUEST, requestId, Samples.attentionRequest(),
        Samples.tensors(tensors, MessageType.FORWARD_REQUEST, DType.FP16, 5));
  }

  @Test
  void encoderReferencesTensorMemoryAndClosesTheMessageWhenTheFrameIsReleased() {
    Message message = forwardRequest(allocator, 1);
    List<Long> tensorAddresses = new ArrayList<>();
    for (Tensor t : message.tensors().asMap().values()) {
      tensorAddresses.add(t.address());
    }
    long tensorBytes = allocator.getAllocatedMemory();

    EmbeddedChannel channel = channel();
    channel.writeOutbound(message);
    CompositeByteBuf frame = assertInstanceOf(CompositeByteBuf.class, channel.readOutbound());
    List<Long> componentAddresses = new ArrayList<>();
    for (ByteBuf component : frame) {
      if (component.hasMemoryAddress()) {
        componentAddresses.add(component.memoryAddress() + component.readerIndex());
      }
    }
    assertTrue(componentAddresses.containsAll(tensorAddresses), "each tensor is a component over its own memory");
    assertEquals(tensorBytes, allocator.getAllocatedMemory(), "tensors stay alive while the frame is in flight");

    frame.release();
    assertEquals(0, allocator.getAllocatedMemory(), "releasing the written frame closed the message");
  }

  @Test
  void encodingFailureClosesTheMessageAndFailsTheWrite() {
    EmbeddedChannel channel = channel(options().maxFrameBytes(WireOptions.MIN_MAX_FRAME_BYTES));
    TensorSet big = new TensorSet().put("o", Tensor.allocate(allocator, DType.FP32, 2048));
    ChannelFuture write = channel.writeOneOutbound(Message.of(MessageType.FORWARD_RESPONSE, 4, Samples.meta(MessageType.FORWARD_RESPONSE), big));
    channel.flushOutbound();
    assertFalse(write.isSuccess());
    ProtocolException cause = assertInstanceOf(ProtocolException.class, write.cause().getCause(), String.valueOf(write.cause()));
    assertEquals(ErrorCode.LIMIT_EXCEEDED, cause.code());
    assertEquals(0, allocator.getAllocatedMemory(), "the refused message was closed");
    assertNull(channel.readOutbound());
  }

  @Test
  void tensorMessageWithoutTensorsIsRefusedAndNothingLeaks() {
    EmbeddedChannel channel = channel();
    Message bad = Message.of(MessageType.FORWARD_REQUEST, 4, Samples.attentionRequest());
    EncoderException e = assertThrows(EncoderException.class, () -> channel.writeOutbound(bad));
    assertInstanceOf(IllegalArgumentException.class, e.getCause());
  }

  @Test
  void controlMessageWithTensorsIsRefusedAndTheTensorsReleased() {
    EmbeddedChannel channel = channel();
    TensorSet tensors = new TensorSet().put("x", Tensor.allocate(allocator, DType.FP32, 4));
    Message bad = new Message(MessageType.PING, 4, 0, new Ping(1), tensors);
    assertThrows(EncoderException.class, () -> channel.writeOutbound(bad));
    assertEquals(0, allocator.getAllocatedMemory());
  }

  @Test
  void reservedFlagsAreRefusedOnSend() {
    EmbeddedChannel channel = channel();
    assertThrows(EncoderException.class, () -> channel.writeOutbound(new Message(MessageType.PING, 4, 0x10, new Ping(1), null)));
  }

  @Test
  void directInputIsDecodedInPlaceAndAccountedToTheAllocatorUntilClosed() {
    byte[] frame;
    try (BufferAllocator sender = allocator.newChildAllocator("sender", 0, Long.MAX_VALUE)) {
      frame = encode(forwardRequest(sender, 2));
    }
    ByteBuf input = input(frame, true);
    long start = input.memoryAddress();
    long end = start + frame.length;

    EmbeddedChannel channel = channel();
    channel.writeInbound(input);
    try (Message m = channel.readInbound()) {
      assertEquals(Frames.payloadLength(frame), allocator.getAllocatedMemory(), "the payload, wrapped, counts against the allocator");
      for (Tensor t : m.tensors().asMap().values()) {
        assertTrue(t.address() >= start && t.address() + t.byteSize() <= end, t + " views the input buffer");
      }
      assertEquals(1, input.refCnt(), "the message holds the network buffer");
    }
    assertEquals(0, input.refCnt(), "closing the message released the network buffer");
    assertEquals(0, allocator.getAllocatedMemory());
  }

  @Test
  void heapInputIsCopiedOnceIntoTheAllocator() {
    byte[] frame;
    try (BufferAllocator sender = allocator.newChildAllocator("sender", 0, Long.MAX_VALUE)) {
      frame = encode(forwardRequest(sender, 3));
    }
    ByteBuf input = input(frame, false);
    EmbeddedChannel channel = channel();
    channel.writeInbound(input);
    assertEquals(0, input.refCnt(), "a heap frame is released once copied");
    try (Message m = channel.readInbound()) {
      assertTrue(allocator.getAllocatedMemory() >= Frames.payloadLength(frame));
      assertPattern(m.tensors().get("q"), DType.FP16, 5, Samples.Q_TOKENS, Samples.HEADS_Q, Samples.HEAD_DIM);
    }
  }

  @Test
  void fullAllocatorAnswersOverloadedAndKeepsTheConnection() {
    byte[] frame;
    try (BufferAllocator sender = allocator.newChildAllocator("sender", 0, Long.MAX_VALUE)) {
      frame = encode(forwardRequest(sender, 6));
    }
    try (BufferAllocator small = allocator.newChildAllocator("small", 0, 1024)) {
      EmbeddedChannel channel = channel(new WireOptions().allocator(small).overloadRetryAfterMs(250));
      channel.writeInbound(input(frame, true));
      DecodeFailure failure = assertInstanceOf(DecodeFailure.class, channel.readInbound());
      assertEquals(ErrorCode.OVERLOADED, failure.error().code());
      assertEquals(250, failure.error().retryAfterMs());
      assertEquals(6, failure.requestId());
      assertFalse(failure.closesConnection());
      channel.writeInbound(input(encode(Message.of(MessageType.PING, 7, new Ping(1))), true));
      try (Message ping = channel.readInbound()) {
        assertEquals(7, ping.requestId());
      }
      channel.finishAndReleaseAll();
    }
  }
}
