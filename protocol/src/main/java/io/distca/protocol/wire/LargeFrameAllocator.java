package io.distca.protocol.wire;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;

/**
 * Where {@link FrameDecoder} assembles a large frame (at least {@link FrameDecoder#LARGE_FRAME_BYTES}):
 * a buffer of its own, allocated when the frame's header arrives. Every tensor decoded from that frame
 * is a view into this buffer, so a receiver that wants tensors in special memory (the CUDA backend:
 * page-locked host memory that the GPU copies from directly) supplies its own allocator here.
 *
 * <p>Called on the channel's event loop. The returned buffer must be direct, contiguous (one NIO
 * buffer), empty (writer index 0) and hold at least {@code bytes}; the decoder releases it once the
 * frame's slices are released. An implementation that cannot serve falls back to
 * {@code channelAllocator}.
 */
@FunctionalInterface
public interface LargeFrameAllocator {
  /** The default: the channel's own allocator, a buffer of exactly {@code bytes}. */
  LargeFrameAllocator CHANNEL = (channelAllocator, bytes) -> channelAllocator.directBuffer(bytes, bytes);

  ByteBuf allocate(ByteBufAllocator channelAllocator, int bytes);
}
