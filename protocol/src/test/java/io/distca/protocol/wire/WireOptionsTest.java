package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.channel.embedded.EmbeddedChannel;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

class WireOptionsTest {

  @Test
  void defaultsAndConcludeValidation() {
    try (BufferAllocator allocator = new RootAllocator()) {
      WireOptions options = new WireOptions().allocator(allocator);
      assertEquals(256L << 20, options.maxFrameBytes());
      assertEquals(100, options.overloadRetryAfterMs());
      assertSame(options, options.conclude());
      assertSame(options, options.conclude(), "conclude is idempotent");
      assertThrows(IllegalStateException.class, () -> options.maxFrameBytes(1 << 20), "frozen after conclude");

      assertTrue(assertThrows(IllegalStateException.class, () -> new WireOptions().conclude()).getMessage().contains("allocator"));
      assertTrue(assertThrows(IllegalStateException.class, () -> new WireOptions().allocator(allocator).maxFrameBytes(4095).conclude())
          .getMessage().contains("maxFrameBytes"));
      assertThrows(IllegalStateException.class, () -> new WireOptions().allocator(allocator).maxFrameBytes(1L << 31).conclude());
      assertThrows(IllegalStateException.class, () -> new WireOptions().allocator(allocator).overloadRetryAfterMs(-1).conclude());
      new WireOptions().allocator(allocator).maxFrameBytes(Integer.MAX_VALUE).conclude();
    }
  }

  @Test
  void codecInstallsTheThreeHandlersByName() {
    try (BufferAllocator allocator = new RootAllocator()) {
      EmbeddedChannel channel = new EmbeddedChannel();
      WireSetup.server(allocator, 1 << 20).accept(channel.pipeline());
      assertTrue(channel.pipeline().get(ProtocolCodec.FRAME_DECODER) instanceof FrameDecoder);
      assertTrue(channel.pipeline().get(ProtocolCodec.MESSAGE_DECODER) instanceof MessageDecoder);
      assertTrue(channel.pipeline().get(ProtocolCodec.MESSAGE_ENCODER) instanceof MessageEncoder);
      channel.finishAndReleaseAll();
    }
  }
}
