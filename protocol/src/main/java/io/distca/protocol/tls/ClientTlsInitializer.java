package io.distca.protocol.tls;

import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import io.netty.handler.ssl.SslHandler;
import java.net.InetSocketAddress;
import java.net.SocketAddress;

/**
 * Stands in for the client's {@link SslHandler} until the channel connects: hostname verification
 * and SNI need the host being dialed, which a pipeline initializer does not know but the connect
 * event carries. On connect it puts the real handler in its place, which starts the handshake once
 * the connection is up.
 */
final class ClientTlsInitializer extends ChannelOutboundHandlerAdapter {
  private final TlsOptions options;

  ClientTlsInitializer(TlsOptions options) {
    this.options = options;
  }

  @Override
  public void connect(ChannelHandlerContext ctx, SocketAddress remote, SocketAddress local, ChannelPromise promise) {
    SslHandler ssl;
    if (remote instanceof InetSocketAddress inet) {
      // getHostString: the name as dialed (no reverse lookup), which is what the certificate must name
      ssl = options.newClientHandler(ctx.alloc(), inet.getHostString(), inet.getPort());
    } else {
      ssl = options.newClientHandler(ctx.alloc(), null, -1);
    }
    ctx.pipeline().replace(this, TlsOptions.HANDLER_NAME, ssl);
    ctx.connect(remote, local, promise);
  }
}
