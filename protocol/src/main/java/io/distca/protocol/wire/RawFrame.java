package io.distca.protocol.wire;

import io.netty.buffer.ByteBuf;
import io.netty.util.AbstractReferenceCounted;
import io.netty.util.ReferenceCounted;
import java.util.Objects;

/**
 * A complete frame whose header passed the framing checks, its metadata and payload still raw:
 * retained slices of the decoder's cumulation buffer (no copy). Releasing the frame releases both.
 */
public final class RawFrame extends AbstractReferenceCounted {
  private final FrameHeader header;
  private final ByteBuf meta;
  private final ByteBuf payload;

  /** Takes over one reference of {@code meta} and of {@code payload}. */
  public RawFrame(FrameHeader header, ByteBuf meta, ByteBuf payload) {
    this.header = Objects.requireNonNull(header, "header");
    this.meta = Objects.requireNonNull(meta, "meta");
    this.payload = Objects.requireNonNull(payload, "payload");
  }

  public FrameHeader header() {
    return header;
  }

  /** UTF-8 JSON metadata; valid while this frame is retained. */
  public ByteBuf meta() {
    return meta;
  }

  /** Arrow IPC stream, empty when the frame has no payload; valid while this frame is retained. */
  public ByteBuf payload() {
    return payload;
  }

  @Override
  public ReferenceCounted touch(Object hint) {
    meta.touch(hint);
    payload.touch(hint);
    return this;
  }

  @Override
  protected void deallocate() {
    meta.release();
    payload.release();
  }

  @Override
  public String toString() {
    return "RawFrame(type " + header.typeCode() + ", request " + header.requestId() + ", meta " + header.metaLength()
        + " B, payload " + header.payloadLength() + " B)";
  }
}
