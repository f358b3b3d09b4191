package io.distca.protocol.transport;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.HelloOk;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.wire.DecodeFailure;
import io.distca.protocol.wire.FrameDecoder;
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
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.GlobalEventExecutor;
import io.netty.util.concurrent.ScheduledFuture;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.security.MessageDigest;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server side every DistCA service shares: accepts connections, requires HELLO (with the shared
 * token when one is configured) before anything else, answers PING, turns decode failures into typed
 * ERROR replies (closing only the offending connection when the stream cannot be trusted), and
 * passes every other message to the service's {@link RequestHandler}.
 *
 * <p>An unauthenticated peer gets one typed refusal and nothing else: until its HELLO is accepted it
 * may send frames of at most {@link ConnectionLimits#unauthenticatedMaxFrameBytes()}, its first
 * frame is answered HELLO_OK or an ERROR that closes the connection (UNAUTHENTICATED,
 * UNSUPPORTED_VERSION, TOO_MANY_CONNECTIONS or a framing error), anything it sent after a refused
 * frame is dropped unread, and a connection without an accepted HELLO after
 * {@link ConnectionLimits#helloTimeoutMs()} is closed. TLS, when the pipeline set-up installs it,
 * comes before all of this ({@code WireSetup.server(..., tls)}).
 */
public final class MessageServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MessageServer.class);

  private final String name;
  private final String token;
  private final long maxFrameBytes;
  private final ConnectionLimits limits;
  private final Map<Object, Integer> connectionsByPeer = new ConcurrentHashMap<>();
  private final AtomicLong refusals = new AtomicLong();
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
    this(name, host, port, ioThreads, token, maxFrameBytes, ConnectionLimits.DEFAULT, pipelineSetup, handler);
  }

  /**
   * @param name this service's name, sent in HELLO_OK
   * @param token required HELLO token; empty or null accepts any peer (that passed TLS, if any)
   * @param limits per-peer connection limit and what an unauthenticated connection may do
   * @param pipelineSetup installs TLS (optionally) and the wire codec on each accepted channel
   */
  public MessageServer(String name, String host, int port, int ioThreads, String token, long maxFrameBytes,
      ConnectionLimits limits, Consumer<ChannelPipeline> pipelineSetup, RequestHandler handler) {
    this.name = name;
    this.token = token == null ? "" : token;
    this.maxFrameBytes = maxFrameBytes;
    this.limits = limits;
    this.boss = Transports.group(1, name + "-accept");
    this.workers = Transports.group(ioThreads, name + "-io");
    ServerBootstrap b = new ServerBootstrap()
        .group(boss, workers)
        .channel(Transports.serverChannel())
        .option(ChannelOption.SO_BACKLOG, 1024)
        // a restarted service binds its port again at once, despite connections in TIME_WAIT
        .option(ChannelOption.SO_REUSEADDR, true)
        .childOption(ChannelOption.TCP_NODELAY, true)
        .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, new WriteBufferWaterMark(8 << 20, 32 << 20))
        .childHandler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            channels.add(ch);
            int peerConnections = countConnection(ch);
            pipelineSetup.accept(ch.pipeline());
            ch.pipeline().addLast("session", new Session(handler, peerConnections));
          }
        });
    try {
      // (a failed bind's cause is a checked IOException, which syncUninterruptibly would rethrow
      // unchecked past this catch and the event loops' shutdown)
      io.netty.channel.ChannelFuture bound = b.bind(new InetSocketAddress(host, port)).awaitUninterruptibly();
      if (!bound.isSuccess()) {
        java.net.BindException refused = new java.net.BindException(String.valueOf(bound.cause().getMessage()));
        refused.initCause(bound.cause());
        throw new java.io.UncheckedIOException("cannot open the data port " + host + ":" + port + ": "
            + bound.cause().getMessage(), refused);
      }
      this.listener = bound.channel();
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

  /** Connections refused so far: bad or missing HELLO, wrong token, over the per-peer limit, HELLO timeout. */
  public long refusals() {
    return refusals.get();
  }

  /** Counts {@code ch} against its remote address until it closes; returns the address's count with it. */
  private int countConnection(Channel ch) {
    Object peer = peerKey(ch.remoteAddress());
    int count = connectionsByPeer.merge(peer, 1, Integer::sum);
    ch.closeFuture().addListener(f -> connectionsByPeer.computeIfPresent(peer, (k, n) -> n == 1 ? null : n - 1));
    return count;
  }

  /** The host, not host and port: one peer's connections come from many ephemeral ports. */
  private static Object peerKey(SocketAddress address) {
    return address instanceof InetSocketAddress inet && inet.getAddress() != null ? inet.getAddress() : String.valueOf(address);
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
    /** Connections of this peer's address, this one included, when it was accepted. */
    private final int peerConnections;
    private Responder responder;
    /** Set once a refusal or a framing error is on its way: everything after it is dropped unread. */
    private boolean closing;
    private ScheduledFuture<?> helloTimeout;

    Session(RequestHandler handler, int peerConnections) {
      this.handler = handler;
      this.peerConnections = peerConnections;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
      FrameDecoder frames = ctx.pipeline().get(FrameDecoder.class);
      if (frames != null) {
        frames.maxFrameBytes(Math.min(maxFrameBytes, limits.unauthenticatedMaxFrameBytes()));
      }
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
      helloTimeout = ctx.executor().schedule(() -> {
        if (responder == null && !closing) {
          refuse(ctx, 0, new ProtocolException(ErrorCode.UNAUTHENTICATED, null,
              "no HELLO accepted within " + limits.helloTimeoutMs() + " ms of connecting"));
        }
      }, limits.helloTimeoutMs(), TimeUnit.MILLISECONDS);
      ctx.fireChannelActive();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      if (closing) {
        if (msg instanceof Message m) {
          m.close();
        } else {
          ReferenceCountUtil.release(msg);
        }
        return;
      }
      if (msg instanceof DecodeFailure failure) {
        LOG.debug("{}: bad frame from {}: {}", name, ctx.channel().remoteAddress(), failure);
        if (failure.closesConnection()) {
          refuse(ctx, failure.requestId(), failure.error());
        } else if (responder == null) {
          refuse(ctx, failure.requestId(), new ProtocolException(ErrorCode.UNAUTHENTICATED, failure.error().field(),
              "the first frame must be a valid HELLO: " + failure.error().getMessage()));
        } else {
          ctx.writeAndFlush(failure.toErrorMessage());
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
        if (peerConnections > limits.maxConnectionsPerPeer()) {
          refuse(ctx, m.requestId(), new ProtocolException(ErrorCode.TOO_MANY_CONNECTIONS, null,
              "this address already holds " + (peerConnections - 1) + " connections, the most a peer may hold is "
                  + limits.maxConnectionsPerPeer(), 1000, null));
          return;
        }
        if (m.type() != MessageType.HELLO) {
          refuse(ctx, m.requestId(), new ProtocolException(ErrorCode.UNAUTHENTICATED, null,
              "the first frame must be HELLO, got " + m.type()));
          return;
        }
        Hello hello = m.meta(Hello.class);
        if (!tokenMatches(hello.token())) {
          refuse(ctx, m.requestId(), new ProtocolException(ErrorCode.UNAUTHENTICATED, "token", "token rejected"));
          return;
        }
        if (hello.protocolVersion() != 1) {
          refuse(ctx, m.requestId(), new ProtocolException(ErrorCode.UNSUPPORTED_VERSION,
              "protocol_version", "this server speaks version 1, peer asked for " + hello.protocolVersion()));
          return;
        }
        responder = new Responder(ctx.channel(), hello.peerName());
        helloTimeout.cancel(false);
        FrameDecoder frames = ctx.pipeline().get(FrameDecoder.class);
        if (frames != null) {
          frames.maxFrameBytes(maxFrameBytes);
        }
        LOG.debug("{}: accepted {} ({}, {}) from {}", name, hello.peerName(), hello.role(), tlsIdentity(ctx),
            ctx.channel().remoteAddress());
        ctx.writeAndFlush(Message.of(MessageType.HELLO_OK, m.requestId(), new HelloOk(name, maxFrameBytes)));
      } finally {
        m.close();
      }
    }

    /** Sends {@code why} as the connection's last frame and closes; drops whatever the peer sends meanwhile. */
    private void refuse(ChannelHandlerContext ctx, long requestId, ProtocolException why) {
      closing = true;
      if (responder == null) {
        refusals.incrementAndGet();
        LOG.warn("{}: refused {} ({}): {}", name, ctx.channel().remoteAddress(), tlsIdentity(ctx), why.getMessage());
      }
      ctx.writeAndFlush(Message.error(requestId, why)).addListener(ChannelFutureListener.CLOSE);
    }

    /** For logs: who the peer's certificate says it is, when TLS is on. */
    private String tlsIdentity(ChannelHandlerContext ctx) {
      SslHandler ssl = ctx.pipeline().get(SslHandler.class);
      if (ssl == null) {
        return "no TLS";
      }
      try {
        return "TLS client " + ssl.engine().getSession().getPeerPrincipal().getName();
      } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
        return "TLS, no client certificate";
      }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      if (helloTimeout != null) {
        helloTimeout.cancel(false);
      }
      if (responder != null) {
        handler.connectionClosed(responder);
      }
      ctx.fireChannelInactive();
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object event) {
      if (event instanceof SslHandshakeCompletionEvent handshake && !handshake.isSuccess()) {
        // the SslHandler closes the connection; say why, since the peer only sees a TLS alert
        refusals.incrementAndGet();
        LOG.warn("{}: TLS handshake with {} failed: {}", name, ctx.channel().remoteAddress(), handshake.cause().toString());
      }
      ctx.fireUserEventTriggered(event);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      LOG.debug("{}: connection {} failed: {}", name, ctx.channel().remoteAddress(), cause.toString());
      ctx.close();
    }
  }
}
