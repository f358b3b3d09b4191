package io.distca.protocol.tls;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.wire.FrameHeader;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.ssl.SslHandler;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * First handler of an accepted channel on a TLS port. It reads the first bytes: a TLS record puts an
 * {@link SslHandler} in its place (which then sees those bytes); anything else (a client configured
 * without TLS, an HTTP probe) is answered with one plaintext ERROR UNAUTHENTICATED saying that the
 * port requires TLS, and the connection closes. A misconfigured client so learns why it was refused
 * instead of seeing a reset, and learns nothing else.
 */
final class PlaintextRefusal extends ByteToMessageDecoder {
  private static final Logger LOG = LoggerFactory.getLogger(PlaintextRefusal.class);
  /** A TLS record header; {@link SslHandler#isEncrypted} needs this many bytes. */
  private static final int RECORD_HEADER_BYTES = 5;
  /** Enough of a DistCA frame header to read its request id. */
  private static final int REQUEST_ID_END = 16;

  private final TlsOptions options;
  private boolean refused;

  PlaintextRefusal(TlsOptions options) {
    this.options = options;
  }

  @Override
  protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
    if (refused) {
      in.skipBytes(in.readableBytes());
      return;
    }
    if (in.readableBytes() < RECORD_HEADER_BYTES) {
      return;
    }
    if (SslHandler.isEncrypted(in, false)) {
      // replacing hands the bytes read so far to the SslHandler
      ctx.pipeline().replace(this, TlsOptions.HANDLER_NAME, options.newServerHandler(ctx.alloc()));
      return;
    }
    if (looksLikeFrameStart(in) && in.readableBytes() < REQUEST_ID_END) {
      return; // wait for the request id so that the refusal answers the client's own HELLO
    }
    long requestId = looksLikeFrameStart(in) ? FrameHeader.requestIdOrZero(in, in.readerIndex()) : 0;
    refused = true;
    in.skipBytes(in.readableBytes());
    LOG.warn("refused a plaintext connection from {}: this port requires TLS", ctx.channel().remoteAddress());
    // from the tail, so that the protocol encoder (after this handler) writes the frame
    ctx.pipeline().writeAndFlush(Message.error(requestId, new ProtocolException(ErrorCode.UNAUTHENTICATED, null,
        "this port requires TLS; the peer sent plaintext"))).addListener(ChannelFutureListener.CLOSE);
  }

  private static boolean looksLikeFrameStart(ByteBuf in) {
    return in.getInt(in.readerIndex()) == FrameHeader.MAGIC;
  }
}
