package io.distca.protocol.wire;

import io.netty.channel.ChannelPipeline;
import java.util.function.Consumer;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Pipeline set-ups for channel initializers: each installs {@link ProtocolCodec} with concluded
 * {@link WireOptions}, so every server and client channel speaks the same codec.
 */
public final class WireSetup {
  private WireSetup() {}

  /** The codec with {@code options} (concluded now, so a bad setting fails at start-up, not per channel). */
  public static Consumer<ChannelPipeline> of(WireOptions options) {
    options.conclude();
    return pipeline -> ProtocolCodec.install(pipeline, options);
  }

  /** Accepting side: payloads accounted to {@code allocator}, frames up to {@code maxFrameBytes}. */
  public static Consumer<ChannelPipeline> server(BufferAllocator allocator, long maxFrameBytes) {
    return of(new WireOptions().allocator(allocator).maxFrameBytes(maxFrameBytes));
  }

  /** Connecting side with the default frame limit ({@link WireOptions#DEFAULT_MAX_FRAME_BYTES}). */
  public static Consumer<ChannelPipeline> client(BufferAllocator allocator) {
    return of(new WireOptions().allocator(allocator));
  }
}
