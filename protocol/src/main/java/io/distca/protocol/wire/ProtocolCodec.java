package io.distca.protocol.wire;

import io.netty.channel.ChannelPipeline;

/**
 * Installs the protocol codec, identically on servers and clients: after it, the next inbound
 * handler receives {@link io.distca.protocol.message.Message}s and {@link DecodeFailure}s, and
 * writing a {@code Message} sends a frame (see {@link MessageEncoder} for who closes it).
 */
public final class ProtocolCodec {
  public static final String FRAME_DECODER = "distca-frame-decoder";
  public static final String MESSAGE_DECODER = "distca-message-decoder";
  public static final String MESSAGE_ENCODER = "distca-message-encoder";

  private ProtocolCodec() {}

  /** Appends frame decoder, message decoder and message encoder to {@code pipeline}. */
  public static ChannelPipeline install(ChannelPipeline pipeline, WireOptions options) {
    options.conclude();
    return pipeline
        .addLast(FRAME_DECODER, new FrameDecoder(options))
        .addLast(MESSAGE_DECODER, new MessageDecoder(options))
        .addLast(MESSAGE_ENCODER, new MessageEncoder(options));
  }
}
