package io.distca.protocol.wire;

import io.distca.protocol.message.Message;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.CompositeByteBuf;

/**
 * An encoded frame that owns the {@link Message} it was encoded from: some of its components wrap
 * the message's tensor memory, so the message is closed only when the last reference to this buffer
 * is released, i.e. after the transport wrote it or dropped it.
 */
final class MessageOwningByteBuf extends CompositeByteBuf {
  private Message owned;

  MessageOwningByteBuf(ByteBufAllocator alloc, Message owned) {
    // Unbounded components: a bounded composite consolidates (copies) once it has too many.
    super(alloc, true, Integer.MAX_VALUE);
    this.owned = owned;
  }

  @Override
  protected void deallocate() {
    try {
      super.deallocate();
    } finally {
      Message message = owned;
      owned = null;
      if (message != null) {
        message.close();
      }
    }
  }
}
