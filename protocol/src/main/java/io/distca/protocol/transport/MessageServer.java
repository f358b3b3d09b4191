package io.distca.protocol.transport;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.HelloOk;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.wire.DecodeFailure;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.net.InetSocketAddress;
import java.security.MessageDigest;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server side every DistCA service shares: accepts connections, requires HELLO (with the shared
 * token when one is configured) before anything else, answers PING, turns decode failures into typed
 * ERROR replies (closing only the offending connection when the stream cannot be trusted), and
 * passes every other message to the service's {@link RequestHandler}.
 */
public final class MessageServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MessageServer.class);

  private final String name;
  private final String token;
  private final long maxFrameBytes;
  private final EventLoopGroup boss;
  private final EventLoopGroup workers;
  private final ChannelGroup channels = new DefaultChannelGroup(GlobalEventExecutor.INSTANCE);
  private final Channel listener;

  /**
   * @param name this service's name, sent in HELLO_OK
   * @param token required HELLO token; empty or null accepts any peer
   * @param pipelineSetup installs the wire codec on each accepted channel
   */
  public MessageServer(String name, String host, int port, int ioThreads, String token, long maxFrameBytes,
      Consumer<ChannelPipeline> pipelineSetup, RequestHandler handler) {
    this.name = name;
    this.token = token == null ? "" : token;
    this.maxFrameBytes = maxFrameBytes;
    this.boss = Transports.group(1, name + "-accept");
    this.workers = Transports.group(ioThreads, name + "-io");
    ServerBootstrap b = new ServerBootstrap()
        .group(boss, workers)
        .channel(Transports.serverChannel())
        .option(ChannelOption.SO_BACKLOG, 1024)
        .childOption(ChannelOption.TCP_NODELAY, true)
        .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, new WriteBufferWaterMark(8 << 20, 32 << 20))
        .childHandler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            channels.add(ch);
            pipelineSetup.accept(ch.pipeline());
            ch.pipeline().addLast("session", new Session(handler));
          }
        });
    try {
      this.listener = b.bind(new InetSocketAddress(host, port)).syncUninterruptibly().channel();
    } catch (RuntimeException e) {
      boss.shutdownGracefully(0, 0, TimeUnit.SECONDS);
      workers.shutdownGracefully(0, 0, TimeUnit.SECONDS);
      throw e;
    }
  }

  public int port() {
    return ((InetSocketAddress) listener.localAddress()).getPort();
  }

  public int connections() {
    return channels.size();
  }

  /** Stops accepting; existing connections stay until {@link #close()}. */
  public void stopAccepting() {
    listener.close().syncUninterruptibly();
  }

  @Override
  public void close() {
    listener.close().syncUninterruptibly();
    channels.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
    boss.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    workers.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }

  private boolean tokenMatches(String offered) {
    if (token.isEmpty()) {
      return true;
    }
    // constant time, so a wrong token's timing tells nothing about the right one
    return offered != null && MessageDigest.isEqual(
        token.getBytes(StandardCharsets.UTF_8), offered.getBytes(StandardCharsets.UTF_8));
  }

  private final class Session extends ChannelInboundHandlerAdapter {
    private final RequestHandler handler;
    private Responder responder;

    Session(RequestHandler handler) {
      this.handler = handler;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      if (msg instanceof DecodeFailure failure) {
        LOG.debug("{}: bad frame from {}: {}", name, ctx.channel().remoteAddress(), failure);
        var write = ctx.writeAndFlush(failure.toErrorMessage());
        if (failure.closesConnection()) {
          write.addListener(ChannelFutureListener.CLOSE);
        }
        return;
      }
      if (!(msg instanceof Message m)) {
        ReferenceCountUtil.release(msg);
        return;
      }
      if (responder == null) {
        greet(ctx, m);
        return;
      }
      switch (m.type()) {
        case PING:
          ctx.writeAndFlush(Message.of(MessageType.PONG, m.requestId(), m.meta(Ping.class)));
          m.close();
          return;
        case HELLO:
          m.close();
          ctx.writeAndFlush(Message.error(m.requestId(),
              new ProtocolException(ErrorCode.UNEXPECTED_MESSAGE, null, "HELLO was already accepted")));
          return;
        default:
          try {
            handler.handle(m, responder);
          } catch (ProtocolException e) {
            responder.error(m.requestId(), e);
          } catch (RuntimeException e) {
            LOG.error("{}: handler failed on {}", name, m, e);
            responder.error(m.requestId(), new ProtocolException(ErrorCode.INTERNAL, null, e.toString()));
          }
      }
    }

    private void greet(ChannelHandlerContext ctx, Message m) {
      try {
        if (m.type() != MessageType.HELLO) {
          ctx.writeAndFlush(Message.error(m.requestId(), new ProtocolException(ErrorCode.UNAUTHENTICATED, null,
              "the first frame must be HELLO, got " + m.type()))).addListener(ChannelFutureListener.CLOSE);
          return;
        }
        Hello hello = m.meta(Hello.class);
        if (!tokenMatches(hello.token())) {
          LOG.warn("{}: refused {} ({}): bad token", name, ctx.channel().remoteAddress(), hello.peerName());
          ctx.writeAndFlush(Message.error(m.requestId(), new ProtocolException(ErrorCode.UNAUTHENTICATED, "token",
              "token rejected"))).addListener(ChannelFutureListener.CLOSE);
          return;
        }
        if (hello.protocolVersion() != 1) {
          ctx.writeAndFlush(Message.error(m.requestId(), new ProtocolException(ErrorCode.UNSUPPORTED_VERSION,
              "protocol_version", "this server speaks version 1, peer asked for " + hello.protocolVersion())))
              .addListener(ChannelFutureListener.CLOSE);
          return;
        }
        responder = new Responder(ctx.channel(), hello.peerName());
        ctx.writeAndFlush(Message.of(MessageType.HELLO_OK, m.requestId(), new HelloOk(name, maxFrameBytes)));
      } finally {
        m.close();
      }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      if (responder != null) {
        handler.connectionClosed(responder);
      }
      ctx.fireChannelInactive();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      LOG.debug("{}: connection {} failed: {}", name, ctx.channel().remoteAddress(), cause.toString());
      ctx.close();
    }
  }
}
