package io.distca.protocol.wire;

import io.netty.buffer.ByteBuf;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.ForeignAllocation;
import org.apache.arrow.memory.util.MemoryUtil;

/** Netty buffers seen as Arrow buffers, accounted to an Arrow allocator. */
final class ArrowBufs {
  private ArrowBufs() {}

  /**
   * An ArrowBuf over the readable bytes of {@code buf}. A contiguous direct buffer is wrapped in
   * place (no copy; the ArrowBuf holds one reference of {@code buf} and releases it when closed).
   * Anything else, e.g. the heap buffers tests feed to an EmbeddedChannel, has no stable native
   * address for tensor views, so it is copied once into a buffer of {@code allocator}.
   *
   * <p>Either way the bytes count against {@code allocator}'s limit, and {@code buf} itself stays
   * owned by the caller.
   *
   * @throws org.apache.arrow.memory.OutOfMemoryException when the allocator's limit is reached
   */
  static ArrowBuf of(BufferAllocator allocator, ByteBuf buf) {
    int length = buf.readableBytes();
    if (buf.isDirect() && buf.nioBufferCount() == 1) {
      ByteBuffer memory = buf.nioBuffer(buf.readerIndex(), length);
      NettyAllocation allocation = new NettyAllocation(buf.retain(), length, MemoryUtil.getByteBufferAddress(memory));
      try {
        return allocator.wrapForeignAllocation(allocation);
      } catch (RuntimeException | Error e) {
        // wrapForeignAllocation releases the allocation on some failure paths but not on an exceeded limit.
        allocation.release0();
        throw e;
      }
    }
    ArrowBuf copy = allocator.buffer(length);
    try {
      copy.setBytes(0, buf.nioBuffer(buf.readerIndex(), length));
      // The allocator rounds capacities up; the slice has exactly the payload's length and shares the reference.
      return copy.slice(0, length);
    } catch (RuntimeException | Error e) {
      copy.close();
      throw e;
    }
  }

  /** Memory of a Netty buffer lent to Arrow: freeing the allocation releases the Netty reference, once. */
  private static final class NettyAllocation extends ForeignAllocation {
    private final ByteBuf owner;
    private final AtomicBoolean released = new AtomicBoolean();

    NettyAllocation(ByteBuf owner, long size, long address) {
      super(size, address);
      this.owner = owner;
    }

    @Override
    protected void release0() {
      if (released.compareAndSet(false, true)) {
        owner.release();
      }
    }
  }
}
