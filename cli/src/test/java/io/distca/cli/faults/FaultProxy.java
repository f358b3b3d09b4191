package io.distca.cli.faults;

import io.distca.protocol.transport.Transports;
import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.util.ReferenceCountUtil;
import java.net.InetSocketAddress;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP proxy between clients and one server that injects faults, switchable while traffic flows:
 * added latency, slicing into tiny random segments, cutting connections mid-stream, and dropping
 * (black-holing) traffic so that the peer looks hung. Each client connection gets its own upstream
 * connection.
 */
final class FaultProxy implements AutoCloseable {
  enum Mode { PASS, LATENCY, SLICE, CUT, DROP }

  private final EventLoopGroup group = Transports.group(2, "fault-proxy");
  private final Channel listener;
  private final String targetHost;
  private final int targetPort;
  private volatile Mode mode = Mode.PASS;
  private volatile long latencyMs = 20;
  /** CUT closes a connection once it has carried this many more bytes. */
  private volatile long cutAfterBytes = 1 << 20;
  private final AtomicLong cuts = new AtomicLong();
  private final AtomicLong bytes = new AtomicLong();

  FaultProxy(String targetHost, int targetPort) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    ServerBootstrap b = new ServerBootstrap()
        .group(group)
        .channel(Transports.serverChannel())
        .childOption(ChannelOption.TCP_NODELAY, true)
        .childOption(ChannelOption.AUTO_READ, false)
        .childHandler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            ch.pipeline().addLast(new Frontend());
          }
        });
    this.listener = b.bind(new InetSocketAddress("127.0.0.1", 0)).syncUninterruptibly().channel();
  }

  int port() {
    return ((InetSocketAddress) listener.localAddress()).getPort();
  }

  void mode(Mode m) {
    mode = m;
  }

  void latencyMs(long ms) {
    latencyMs = ms;
  }

  void cutAfterBytes(long n) {
    cutAfterBytes = n;
  }

  long cuts() {
    return cuts.get();
  }

  long bytes() {
    return bytes.get();
  }

  /** Forwards what one side reads to the other side, through the current fault. */
  private final class Relay extends ChannelInboundHandlerAdapter {
    private final Channel peer;
    private final SplittableRandom rnd = new SplittableRandom(17);
    private long carried;

    Relay(Channel peer) {
      this.peer = peer;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      ByteBuf buf = (ByteBuf) msg;
      bytes.addAndGet(buf.readableBytes());
      Mode m = mode;
      switch (m) {
        case DROP:
          ReferenceCountUtil.release(buf); // black hole: the other side sees silence
          ctx.read();
          return;
        case CUT:
          carried += buf.readableBytes();
          if (carried > cutAfterBytes) {
            ReferenceCountUtil.release(buf);
            cuts.incrementAndGet();
            ctx.close();
            peer.close();
            return;
          }
          forward(ctx, buf);
          return;
        case LATENCY:
          ctx.executor().schedule(() -> forward(ctx, buf), latencyMs, TimeUnit.MILLISECONDS);
          return;
        case SLICE:
          while (buf.readableBytes() > 0) {
            int n = Math.min(buf.readableBytes(), 1 + rnd.nextInt(1500));
            peer.write(buf.readRetainedSlice(n));
            peer.flush();
          }
          buf.release();
          ctx.read();
          return;
        default:
          forward(ctx, buf);
      }
    }

    private void forward(ChannelHandlerContext ctx, ByteBuf buf) {
      peer.writeAndFlush(buf).addListener((ChannelFutureListener) f -> {
        if (f.isSuccess()) {
          ctx.channel().read();
        } else {
          ctx.close();
        }
      });
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      peer.close();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      ctx.close();
    }
  }

  private final class Frontend extends ChannelInboundHandlerAdapter {
    @Override
    public void channelActive(ChannelHandlerContext ctx) {
      Channel inbound = ctx.channel();
      Bootstrap b = new Bootstrap()
          .group(inbound.eventLoop())
          .channel(Transports.clientChannel())
          .option(ChannelOption.TCP_NODELAY, true)
          .option(ChannelOption.AUTO_READ, false)
          .handler(new ChannelInitializer<SocketChannel>() {
            @Override
            protected void initChannel(SocketChannel ch) {
              ch.pipeline().addLast(new Relay(inbound));
            }
          });
      b.connect(targetHost, targetPort).addListener((ChannelFutureListener) f -> {
        if (!f.isSuccess()) {
          inbound.close();
          return;
        }
        Channel outbound = f.channel();
        inbound.pipeline().remove(this);
        inbound.pipeline().addLast(new Relay(outbound));
        inbound.read();
        outbound.read();
      });
    }
  }

  @Override
  public void close() {
    listener.close().syncUninterruptibly();
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }
}
