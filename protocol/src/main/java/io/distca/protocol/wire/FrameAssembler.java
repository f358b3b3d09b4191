package io.distca.protocol.wire;

import io.distca.protocol.tensor.Tensor;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.Unpooled;

/**
 * Builds an outgoing frame as a composite buffer: small parts (header, JSON, Arrow metadata,
 * padding) are written into pooled scratch buffers, tensor values are appended as buffers that wrap
 * the tensor's memory, so the encoder copies no tensor byte.
 */
final class FrameAssembler {
  private static final int SCRATCH_BYTES = 512;

  private final ByteBufAllocator alloc;
  private final CompositeByteBuf frame;
  private ByteBuf scratch;

  FrameAssembler(ByteBufAllocator alloc, CompositeByteBuf frame) {
    this.alloc = alloc;
    this.frame = frame;
  }

  /** The buffer small parts are appended to; it becomes a component at the next reference or finish. */
  ByteBuf scratch() {
    if (scratch == null) {
      scratch = alloc.buffer(SCRATCH_BYTES);
    }
    return scratch;
  }

  void zeros(long count) {
    if (count > 0) {
      scratch().writeZero((int) count);
    }
  }

  /** Appends {@code tensor}'s bytes without copying them; the tensor must outlive the frame. */
  void reference(Tensor tensor) {
    long bytes = tensor.byteSize();
    if (bytes == 0) {
      return;
    }
    flushScratch();
    frame.addComponent(true, Unpooled.wrappedBuffer(tensor.buffer().nioBuffer(tensor.byteOffset(), (int) bytes)));
  }

  CompositeByteBuf finish() {
    flushScratch();
    return frame;
  }

  /** Releases the pending scratch buffer after a failure; the frame is the caller's to release. */
  void abandon() {
    if (scratch != null) {
      scratch.release();
      scratch = null;
    }
  }

  private void flushScratch() {
    if (scratch != null) {
      ByteBuf done = scratch;
      scratch = null;
      frame.addComponent(true, done);
    }
  }
}
