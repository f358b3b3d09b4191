package io.distca.protocol.transport;

import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.HelloOk;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.ProtocolException;
import io.netty.bootstrap.Bootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.util.ReferenceCountUtil;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A client connection to a DistCA peer (attention server or dispatcher): HELLO handshake, then
 * pipelined requests matched to their responses by request id, in any order. Every pending request
 * ends exactly once: with its response, with the peer's typed ERROR ({@link ProtocolException}), with
 * this side's typed encoding failure (a {@link ProtocolException} such as LIMIT_EXCEEDED for a frame
 * above the limit), or with {@link ConnectionLostException} when the connection closes.
 */
public final class PeerConnection implements AutoCloseable {
  private final Channel channel;
  private final String peer;
  private final AtomicLong nextRequestId = new AtomicLong(1);
  private final Map<Long, CompletableFuture<Message>> pending = new ConcurrentHashMap<>();
  private volatile HelloOk helloOk;
  private volatile String lostPeer;
  /** What broke the connection (a failed TLS handshake, a pipeline error), kept for later requests. */
  private volatile Throwable failure;

  private PeerConnection(Channel channel, String peer) {
    this.channel = channel;
    this.peer = peer;
  }

  /**
   * Connects, installs the codec through {@code codec}, sends {@code hello} and completes once the
   * peer accepted it.
   */
  public static CompletableFuture<PeerConnection> connect(
      EventLoopGroup group, String host, int port, Hello hello, Consumer<ChannelPipeline> codec, Duration timeout) {
    CompletableFuture<PeerConnection> result = new CompletableFuture<>();
    String peer = host + ":" + port;
    PeerConnection[] holder = new PeerConnection[1];
    Bootstrap b = new Bootstrap()
        .group(group)
        .channel(Transports.clientChannel())
        .option(ChannelOption.TCP_NODELAY, true)
        .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.min(Integer.MAX_VALUE, timeout.toMillis()))
        .option(ChannelOption.WRITE_BUFFER_WATER_MARK, new WriteBufferWaterMark(8 << 20, 32 << 20))
        .handler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            PeerConnection c = new PeerConnection(ch, peer);
            holder[0] = c;
            codec.accept(ch.pipeline());
            ch.pipeline().addLast("peer", c.new Inbound());
          }
        });
    ChannelFuture cf = b.connect(new InetSocketAddress(host, port));
    cf.addListener(f -> {
      if (!f.isSuccess()) {
        result.completeExceptionally(new ConnectionLostException("cannot connect to " + peer + ": " + f.cause(), f.cause()));
        return;
      }
      PeerConnection c = holder[0];
      c.request(Message.of(MessageType.HELLO, 0, hello))
          .orTimeout(timeout.toMillis(), TimeUnit.MILLISECONDS)
          .whenComplete((reply, err) -> {
            if (err != null) {
              c.close();
              Throwable cause = err instanceof TimeoutException ? new ConnectionLostException("no HELLO_OK from " + peer + " within " + timeout) : err;
              result.completeExceptionally(cause);
            } else if (reply.type() != MessageType.HELLO_OK) {
              reply.close();
              c.close();
              result.completeExceptionally(new ConnectionLostException(peer + " answered HELLO with " + reply.type()));
            } else {
              c.helloOk = reply.meta(HelloOk.class);
              reply.close();
              result.complete(c);
            }
          });
    });
    return result;
  }

  public String peer() {
    return peer;
  }

  public HelloOk helloOk() {
    return helloOk;
  }

  public boolean isActive() {
    return channel.isActive();
  }

  public Channel channel() {
    return channel;
  }

  public int pendingRequests() {
    return pending.size();
  }

  /**
   * Sends {@code message} under a fresh request id (its own id is ignored) and takes ownership of it
   * (its tensors are released once written). The returned message belongs to the caller, who closes it.
   */
  public CompletableFuture<Message> request(Message message) {
    long id = nextRequestId.getAndIncrement();
    CompletableFuture<Message> f = new CompletableFuture<>();
    Message framed = new Message(message.type(), id, message.flags(), message.meta(), message.tensors());
    if (!channel.isActive()) {
      framed.close();
      Throwable why = failure;
      f.completeExceptionally(why == null ? new ConnectionLostException("connection to " + peer + " is closed")
          : new ConnectionLostException("connection to " + peer + " is closed: " + why, why));
      return f;
    }
    pending.put(id, f);
    // a caller's timeout completes f: forget the id so a late answer is simply dropped
    f.whenComplete((r, e) -> pending.remove(id, f));
    channel.writeAndFlush(framed).addListener(w -> {
      if (!w.isSuccess()) {
        // a write that failed before the encoder took the message (the channel closed under it)
        // leaves the tensors with nobody: Netty only releases reference-counted messages
        framed.close();
        CompletableFuture<Message> p = pending.remove(id);
        if (p != null) {
          p.completeExceptionally(writeFailure(w.cause()));
        }
      }
    });
    return f;
  }

  /**
   * Why a write failed, as the request's caller should see it: a message this side could not encode
   * (a frame above the limit: LIMIT_EXCEEDED) fails with the encoder's typed error, which says that
   * sending it again anywhere cannot work; anything else lost the connection.
   */
  private RuntimeException writeFailure(Throwable cause) {
    if (cause instanceof io.netty.handler.codec.EncoderException e && e.getCause() instanceof ProtocolException pe) {
      return pe;
    }
    if (cause instanceof io.netty.handler.codec.EncoderException e && e.getCause() instanceof IllegalArgumentException iae) {
      return iae;
    }
    return new ConnectionLostException("write to " + peer + " failed: " + cause, cause);
  }

  /**
   * Pings the peer every {@code intervalMs} and closes the connection when a PONG is more than
   * {@code timeoutMs} late. The peer answers PING on its I/O thread, even while its compute is busy,
   * so silence means a hung or partitioned peer (a stopped process keeps its TCP connections open):
   * closing fails every pending request with {@link ConnectionLostException}, and callers re-send
   * them elsewhere long before a request timeout would fire.
   */
  public void keepAlive(long intervalMs, long timeoutMs) {
    channel.eventLoop().schedule(() -> ping(intervalMs, timeoutMs), intervalMs, TimeUnit.MILLISECONDS);
  }

  private void ping(long intervalMs, long timeoutMs) {
    if (!channel.isActive()) {
      return;
    }
    request(Message.of(MessageType.PING, 0, new Ping(System.nanoTime())))
        .orTimeout(timeoutMs, TimeUnit.MILLISECONDS)
        .whenComplete((pong, err) -> {
          if (pong != null) {
            pong.close();
          }
          if (err != null) {
            if (channel.isActive()) {
              lostPeer = "no PONG from " + peer + " within " + timeoutMs + " ms";
              channel.close();
            }
            return;
          }
          channel.eventLoop().schedule(() -> ping(intervalMs, timeoutMs), intervalMs, TimeUnit.MILLISECONDS);
        });
  }

  /** A request that gives up after {@code timeout}; a late response is then dropped and released. */
  public CompletableFuture<Message> request(Message message, Duration timeout) {
    return request(message).orTimeout(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  @Override
  public void close() {
    channel.close();
  }

  private final class Inbound extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      if (!(msg instanceof Message)) {
        // a decode failure of what the peer sent: the stream can no longer be trusted
        ReferenceCountUtil.release(msg);
        failAll(new ConnectionLostException(peer + " sent an undecodable frame: " + msg));
        ctx.close();
        return;
      }
      Message m = (Message) msg;
      CompletableFuture<Message> f = pending.remove(m.requestId());
      if (f == null) {
        if (m.requestId() == 0 && m.type() == MessageType.ERROR) {
          // about the connection as a whole (a refusal, a framing error), which the peer closes next:
          // every pending request is lost with it, and the typed reason says why
          ProtocolException why = ProtocolException.of(m.meta(ErrorReply.class));
          failAll(new ConnectionLostException(peer + " ended the connection: " + why.getMessage(), why));
        }
        m.close(); // else an answer to a request that already timed out
        return;
      }
      if (m.type() == MessageType.ERROR) {
        ErrorReply e = m.meta(ErrorReply.class);
        m.close();
        f.completeExceptionally(ProtocolException.of(e));
      } else if (!f.complete(m)) {
        m.close();
      }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      String why = lostPeer;
      failAll(new ConnectionLostException(why != null ? why : "connection to " + peer + " closed", failure));
      ctx.fireChannelInactive();
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object event) {
      // a failed TLS handshake closes the channel, possibly before the first request (HELLO) is
      // written: that request then fails with this cause rather than as a plain closed connection
      if (event instanceof SslHandshakeCompletionEvent handshake && !handshake.isSuccess()) {
        remember(handshake.cause());
      }
      ctx.fireUserEventTriggered(event);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      remember(cause);
      failAll(new ConnectionLostException("connection to " + peer + " failed: " + cause, cause));
      ctx.close();
    }

    private void remember(Throwable cause) {
      if (failure == null) {
        failure = cause;
      }
    }

    private void failAll(RuntimeException e) {
      for (Long id : pending.keySet()) {
        CompletableFuture<Message> f = pending.remove(id);
        if (f != null) {
          f.completeExceptionally(e);
        }
      }
    }
  }
}
