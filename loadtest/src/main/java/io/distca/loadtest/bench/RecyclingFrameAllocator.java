package io.distca.loadtest.bench;

import io.distca.protocol.wire.LargeFrameAllocator;
import io.distca.protocol.wire.LentFrameBuf;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * Large frames in direct buffers that are kept and reused once released, by exact size: what the
 * attention server's pinned pool does for its frames, without the pinning. The server benchmark's
 * echo server and clients receive through it, so that the transport roofline measures moving the
 * bytes, not mapping and faulting in a fresh buffer of hundreds of megabytes per frame (Netty's
 * allocators do not pool buffers that large). Idle buffers are kept up to {@code maxIdleBytes};
 * beyond that a released buffer is dropped for the garbage collector.
 */
final class RecyclingFrameAllocator implements LargeFrameAllocator {
  private final long maxIdleBytes;
  private final Map<Integer, ArrayDeque<ByteBuffer>> idle = new HashMap<>();
  private long idleBytes;
  private long allocated;
  private long reused;

  RecyclingFrameAllocator(long maxIdleBytes) {
    this.maxIdleBytes = maxIdleBytes;
  }

  @Override
  public ByteBuf allocate(ByteBufAllocator channelAllocator, int bytes) {
    ByteBuffer idle = take(bytes);
    ByteBuffer memory = idle != null ? idle : ByteBuffer.allocateDirect(bytes);
    return new LentFrameBuf(channelAllocator, memory, bytes, () -> giveBack(memory));
  }

  private synchronized ByteBuffer take(int bytes) {
    ArrayDeque<ByteBuffer> free = idle.get(bytes);
    ByteBuffer memory = free == null ? null : free.pollFirst();
    if (memory == null) {
      allocated++;
    } else {
      idleBytes -= bytes;
      reused++;
    }
    return memory;
  }

  private synchronized void giveBack(ByteBuffer memory) {
    int bytes = memory.capacity();
    if (idleBytes + bytes <= maxIdleBytes) {
      idle.computeIfAbsent(bytes, b -> new ArrayDeque<>()).addFirst(memory);
      idleBytes += bytes;
    }
  }

  /** Buffers allocated (first use of a size, or none idle) and served again from the idle ones. */
  synchronized long[] allocatedAndReused() {
    return new long[] {allocated, reused};
  }

  @Override
  public String toString() {
    return "recycled direct frames (" + idleBytes + " of " + maxIdleBytes + " bytes idle)";
  }
}
