package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The leak guard every codec test relies on does catch a leaked buffer. */
class NettyLeaksTest extends WireTestBase {

  @Test
  void aBufferDroppedWithoutReleaseIsReported() {
    NettyLeaks.assertNoLeaks();
    leakOne();
    List<String> leaks = NettyLeaks.drain();
    assertFalse(leaks.isEmpty(), "a dropped buffer must be reported");
    assertTrue(leaks.get(0).contains("ByteBuf"), leaks.get(0));
  }

  private static void leakOne() {
    ByteBuf leaked = PooledByteBufAllocator.DEFAULT.directBuffer(64);
    leaked.writeLong(1);
  }
}
