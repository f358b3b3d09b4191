package io.distca.protocol.wire;

import io.distca.protocol.tls.TlsOptions;
import io.netty.channel.ChannelPipeline;
import java.util.function.Consumer;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Pipeline set-ups for channel initializers: each installs TLS (when given {@link TlsOptions}) and
 * then {@link ProtocolCodec} with concluded {@link WireOptions}, so every server and client channel
 * speaks the same codec over the same transport security.
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

  /**
   * Accepting side over TLS ({@code tls} null: plaintext): TLS clients are served, plaintext ones
   * get ERROR UNAUTHENTICATED and are closed.
   */
  public static Consumer<ChannelPipeline> server(BufferAllocator allocator, long maxFrameBytes, TlsOptions tls) {
    return server(allocator, maxFrameBytes, tls, LargeFrameAllocator.CHANNEL);
  }

  /**
   * Accepting side over TLS ({@code tls} null: plaintext) whose large frames are assembled in buffers
   * of {@code largeFrames} (e.g. page-locked memory that a GPU reads directly).
   */
  public static Consumer<ChannelPipeline> server(
      BufferAllocator allocator, long maxFrameBytes, TlsOptions tls, LargeFrameAllocator largeFrames) {
    Consumer<ChannelPipeline> codec =
        of(new WireOptions().allocator(allocator).maxFrameBytes(maxFrameBytes).largeFrameAllocator(largeFrames));
    if (tls == null) {
      return codec;
    }
    tls.conclude();
    if (!tls.canServe()) {
      throw new IllegalStateException("TLS on a listening port needs certificateChain and privateKey: " + tls);
    }
    return pipeline -> {
      tls.addServerHandler(pipeline);
      codec.accept(pipeline);
    };
  }

  /** Connecting side with the default frame limit ({@link WireOptions#DEFAULT_MAX_FRAME_BYTES}). */
  public static Consumer<ChannelPipeline> client(BufferAllocator allocator) {
    return of(new WireOptions().allocator(allocator));
  }

  /** Connecting side over TLS ({@code tls} null: plaintext), verifying the server as {@code tls} says. */
  public static Consumer<ChannelPipeline> client(BufferAllocator allocator, TlsOptions tls) {
    return client(allocator, tls, WireOptions.DEFAULT_MAX_FRAME_BYTES);
  }

  /**
   * Connecting side over TLS ({@code tls} null: plaintext) that sends and accepts frames up to
   * {@code maxFrameBytes}: a client whose requests or responses may be larger than the default
   * sets it to what its servers accept (their HELLO_OK says).
   */
  public static Consumer<ChannelPipeline> client(BufferAllocator allocator, TlsOptions tls, long maxFrameBytes) {
    Consumer<ChannelPipeline> codec = of(new WireOptions().allocator(allocator).maxFrameBytes(maxFrameBytes));
    if (tls == null) {
      return codec;
    }
    tls.conclude();
    return pipeline -> {
      tls.addClientHandler(pipeline);
      codec.accept(pipeline);
    };
  }
}
