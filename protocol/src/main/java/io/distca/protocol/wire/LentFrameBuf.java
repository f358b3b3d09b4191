package io.distca.protocol.wire;

import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.UnpooledUnsafeDirectByteBuf;
import java.nio.ByteBuffer;

/**
 * A Netty buffer over direct memory that a {@link LargeFrameAllocator} lends from a pool of its own
 * (page-locked buffers, reused direct buffers): empty when handed out, and on deallocation (the last
 * reference released) it gives the memory back through {@code giveBack} instead of freeing it.
 */
public final class LentFrameBuf extends UnpooledUnsafeDirectByteBuf {
  private final Runnable giveBack;

  /**
   * @param memory direct memory of at least {@code capacity} bytes, which this buffer never frees
   * @param giveBack runs once, when the buffer is deallocated
   */
  public LentFrameBuf(ByteBufAllocator alloc, ByteBuffer memory, int capacity, Runnable giveBack) {
    // This constructor never frees the memory it is given (Netty's "doNotFree").
    super(alloc, memory, capacity);
    this.giveBack = giveBack;
    clear();
  }

  @Override
  protected void deallocate() {
    try {
      super.deallocate();
    } finally {
      giveBack.run();
    }
  }
}
