package io.distca.loadtest.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.junit.jupiter.api.Test;

class RecyclingFrameAllocatorTest {

  @Test
  void releasedFrameMemoryServesTheNextFrameOfItsSizeWithinTheIdleCap() {
    RecyclingFrameAllocator frames = new RecyclingFrameAllocator(3 << 20);
    ByteBufAllocator alloc = ByteBufAllocator.DEFAULT;
    ByteBuf a = frames.allocate(alloc, 2 << 20);
    assertEquals(0, a.writerIndex(), "handed out empty");
    assertEquals(2 << 20, a.capacity());
    a.writeLong(42);
    long address = a.memoryAddress();
    a.release();
    ByteBuf b = frames.allocate(alloc, 2 << 20);
    assertEquals(address, b.memoryAddress(), "the released memory again");
    assertEquals(0, b.writerIndex());
    ByteBuf other = frames.allocate(alloc, 1 << 20);
    assertNotEquals(address, other.memoryAddress(), "another size gets its own memory");
    assertArrayEquals(new long[] {2, 1}, frames.allocatedAndReused());
    // 2 MiB + 1 MiB idle fit the 3 MiB cap; a third buffer released beyond it is dropped
    ByteBuf c = frames.allocate(alloc, 2 << 20);
    b.release();
    other.release();
    c.release();
    frames.allocate(alloc, 2 << 20);
    frames.allocate(alloc, 1 << 20);
    frames.allocate(alloc, 2 << 20);
    assertArrayEquals(new long[] {4, 3}, frames.allocatedAndReused());
  }
}
