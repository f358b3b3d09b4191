package io.distca.server.backend.cuda;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.wire.LargeFrameAllocator;
import io.distca.protocol.wire.LentFrameBuf;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.ForeignAllocation;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * A {@link PinnedBufferPool} as the two kinds of host buffers the server uses: Netty buffers that
 * large frames are received into ({@link LargeFrameAllocator}; received tensors are views into them)
 * and Arrow buffers that output tensors are allocated in. Releasing either, the last reference of the
 * Netty buffer or the Arrow buffer's close, returns the pooled buffer. When the pool cannot serve, a
 * frame goes into the channel allocator's memory and an output gets null (the caller allocates
 * ordinary memory).
 */
final class PinnedBuffers implements LargeFrameAllocator {
  private final PinnedBufferPool pool;

  PinnedBuffers(PinnedBufferPool pool) {
    this.pool = pool;
  }

  PinnedBufferPool pool() {
    return pool;
  }

  @Override
  public ByteBuf allocate(ByteBufAllocator channelAllocator, int bytes) {
    PinnedBufferPool.Lease lease = pool.acquire(bytes);
    if (lease == null) {
      return LargeFrameAllocator.CHANNEL.allocate(channelAllocator, bytes);
    }
    return new LentFrameBuf(channelAllocator, MemoryUtil.directBuffer(lease.address(), bytes), bytes, lease::release);
  }

  /**
   * An uninitialized tensor in a pooled buffer, accounted to {@code accounting}; null when the pool
   * cannot serve.
   *
   * @throws org.apache.arrow.memory.OutOfMemoryException when {@code accounting}'s limit is reached
   *     (the pooled buffer goes back first)
   */
  Tensor allocateTensor(BufferAllocator accounting, DType dtype, int... shape) {
    long bytes = Math.max(1, Tensor.numelOf(shape) * dtype.byteSize());
    PinnedBufferPool.Lease lease = pool.acquire(bytes);
    if (lease == null) {
      return null;
    }
    PinnedAllocation allocation = new PinnedAllocation(lease, bytes);
    ArrowBuf buf;
    try {
      buf = accounting.wrapForeignAllocation(allocation);
    } catch (RuntimeException | Error e) {
      // wrapForeignAllocation does not release the allocation when the limit is exceeded.
      lease.release();
      throw e;
    }
    try {
      return Tensor.adopt(buf, dtype, shape);
    } catch (RuntimeException e) {
      buf.close();
      throw e;
    }
  }

  @Override
  public String toString() {
    return "pinned frames from " + pool;
  }

  /** A leased pinned buffer lent to Arrow: freeing the allocation returns the lease. */
  private static final class PinnedAllocation extends ForeignAllocation {
    private final PinnedBufferPool.Lease lease;

    PinnedAllocation(PinnedBufferPool.Lease lease, long bytes) {
      super(bytes, lease.address());
      this.lease = lease;
    }

    @Override
    protected void release0() {
      lease.release();
    }
  }
}
