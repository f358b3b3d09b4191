package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Cuts the inbound byte stream into {@link RawFrame}s. The header is validated as soon as its 32
 * bytes are in, so an oversized or malformed frame is refused before any of its body is buffered.
 *
 * <p>A framing violation (bad magic, unsupported version, reserved bits set, nonzero padding, frame
 * above {@link WireOptions#maxFrameBytes()}) leaves the stream unparseable: this decoder emits one
 * {@link DecodeFailure} and from then on discards every inbound byte, so that the connection handler
 * can send its ERROR and close. Metadata and payload are retained slices of the cumulation buffer;
 * nothing is copied.
 *
 * <p>Large frames (at least {@link #LARGE_FRAME_BYTES}) are assembled in a buffer of their own,
 * allocated once at the frame's exact size when its header arrives. Left to the cumulation buffer,
 * a 64 MiB frame would grow it in 4 MiB steps, each step copying everything received so far (and
 * copying again whenever an earlier frame's slices still pin the old buffer): quadratic in the
 * frame size. The dedicated buffer keeps it to one copy per byte, the same as a small frame. It comes
 * from {@link WireOptions#largeFrameAllocator()} (default: the channel's allocator), so that a
 * receiver can have large frames, and the tensors decoded from them, land in memory of its choice.
 */
public final class FrameDecoder extends ByteToMessageDecoder {
  private static final Logger LOG = LoggerFactory.getLogger(FrameDecoder.class);
  static final int LARGE_FRAME_BYTES = 1 << 20;

  private final LargeFrameAllocator largeFrameAllocator;
  private long maxFrameBytes;
  private boolean failed;
  private ByteBuf large;
  private FrameHeader largeHeader;

  public FrameDecoder(WireOptions options) {
    this.maxFrameBytes = options.conclude().maxFrameBytes();
    this.largeFrameAllocator = options.largeFrameAllocator();
  }

  /**
   * Changes the limit for the frames whose header is not read yet, e.g. a small one until the peer
   * has authenticated, so that an unauthenticated peer cannot make this side buffer a large frame.
   * Call it from the channel's event loop.
   */
  public void maxFrameBytes(long maxFrameBytes) {
    this.maxFrameBytes = maxFrameBytes;
  }

  @Override
  protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
    if (failed) {
      in.skipBytes(in.readableBytes());
      return;
    }
    if (large != null) {
      int missing = (int) largeHeader.frameLength() - large.readableBytes();
      large.writeBytes(in, Math.min(in.readableBytes(), missing));
      if (large.readableBytes() < largeHeader.frameLength()) {
        return;
      }
      ByteBuf frame = large;
      large = null;
      try {
        emit(frame, largeHeader, out);
      } finally {
        frame.release(); // the emitted slices hold their own references
      }
      return;
    }
    if (in.readableBytes() < FrameHeader.BYTES) {
      return;
    }
    int start = in.readerIndex();
    FrameHeader header;
    try {
      header = FrameHeader.read(in, start);
      header.check(maxFrameBytes);
    } catch (ProtocolException e) {
      fail(in, out, new DecodeFailure(FrameHeader.requestIdOrZero(in, start), null, e));
      return;
    }
    if (in.readableBytes() < header.frameLength()) {
      if (header.frameLength() >= LARGE_FRAME_BYTES) {
        large = largeBuffer(ctx, (int) header.frameLength());
        largeHeader = header;
        large.writeBytes(in, in.readableBytes());
      }
      return;
    }
    emit(in, header, out);
  }

  /**
   * A buffer for a large frame from the configured allocator, checked to be usable before any byte
   * goes in. An allocator that fails or hands out an unusable buffer is a bug of the receiver, not of
   * the peer: it is logged, the buffer released, and the frame goes into the channel allocator's
   * buffer instead, so the connection keeps working.
   */
  private ByteBuf largeBuffer(ChannelHandlerContext ctx, int frameLength) {
    if (largeFrameAllocator != LargeFrameAllocator.CHANNEL) {
      ByteBuf buf = null;
      try {
        buf = largeFrameAllocator.allocate(ctx.alloc(), frameLength);
        if (buf != null && buf.isDirect() && buf.nioBufferCount() == 1 && buf.writerIndex() == 0
            && buf.writableBytes() >= frameLength) {
          return buf;
        }
        LOG.warn("large-frame allocator {} returned {} for a frame of {} bytes (it must be direct, contiguous, empty"
            + " and hold the whole frame); using the channel's allocator", largeFrameAllocator, buf, frameLength);
      } catch (RuntimeException e) {
        LOG.warn("large-frame allocator {} failed for a frame of {} bytes; using the channel's allocator",
            largeFrameAllocator, frameLength, e);
      }
      if (buf != null) {
        buf.release();
      }
    }
    return LargeFrameAllocator.CHANNEL.allocate(ctx.alloc(), frameLength);
  }

  /** Cuts the complete frame at {@code in}'s reader index into header, metadata and payload. */
  private void emit(ByteBuf in, FrameHeader header, List<Object> out) {
    int start = in.readerIndex();
    int metaLength = (int) header.metaLength();
    int paddingStart = start + FrameHeader.BYTES + metaLength;
    for (int i = 0; i < header.padding(); i++) {
      if (in.getByte(paddingStart + i) != 0) {
        fail(in, out, new DecodeFailure(header.requestId(), null, new ProtocolException(
            ErrorCode.MALFORMED_FRAME, "padding",
            "padding byte " + i + " after " + metaLength + " bytes of metadata is not zero"
                + " (was the payload written without padding to a multiple of 8?)")));
        return;
      }
    }
    in.skipBytes(FrameHeader.BYTES);
    ByteBuf meta = in.readRetainedSlice(metaLength);
    in.skipBytes(header.padding());
    ByteBuf payload = header.payloadLength() == 0 ? Unpooled.EMPTY_BUFFER : in.readRetainedSlice((int) header.payloadLength());
    out.add(new RawFrame(header, meta, payload));
  }

  @Override
  protected void handlerRemoved0(ChannelHandlerContext ctx) {
    if (large != null) {
      large.release();
      large = null;
    }
  }

  private void fail(ByteBuf in, List<Object> out, DecodeFailure failure) {
    failed = true;
    in.skipBytes(in.readableBytes());
    out.add(failure);
  }
}
