package io.distca.protocol.transport;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufHolder;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.ChannelPromise;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;

/**
 * Counts what crosses the wire on a set of channels: bytes each way (at the socket end of the
 * pipeline, so frame headers and, with TLS, encryption overhead count too), connections accepted,
 * and the ERROR replies sent, by code. Plain counters, read by the services' metrics at scrape time;
 * counting is a few adds per frame.
 */
public final class WireTraffic {
  public static final String BYTES_HANDLER = "distca-traffic-bytes";
  public static final String ERRORS_HANDLER = "distca-traffic-errors";

  private final LongAdder bytesReceived = new LongAdder();
  private final LongAdder bytesSent = new LongAdder();
  private final LongAdder connections = new LongAdder();
  private final LongAdder[] errorsSent = new LongAdder[ErrorCode.values().length];
  private final ByteCounter byteCounter = new ByteCounter();
  private final ErrorCounter errorCounter = new ErrorCounter();

  public WireTraffic() {
    for (int i = 0; i < errorsSent.length; i++) {
      errorsSent[i] = new LongAdder();
    }
  }

  /**
   * Wraps a pipeline set-up (the codec) so that each channel it sets up is counted: the byte counter
   * goes first in the pipeline, the error counter after the codec (so it sees the ERROR messages
   * that the service's handler, added next, writes).
   */
  public Consumer<ChannelPipeline> counting(Consumer<ChannelPipeline> setup) {
    return pipeline -> {
      connections.increment();
      pipeline.addFirst(BYTES_HANDLER, byteCounter);
      setup.accept(pipeline);
      pipeline.addLast(ERRORS_HANDLER, errorCounter);
    };
  }

  public long bytesReceived() {
    return bytesReceived.sum();
  }

  public long bytesSent() {
    return bytesSent.sum();
  }

  public long connectionsOpened() {
    return connections.sum();
  }

  public long errorsSent(ErrorCode code) {
    return errorsSent[code.ordinal()].sum();
  }

  private static long size(Object msg) {
    if (msg instanceof ByteBuf b) {
      return b.readableBytes();
    }
    if (msg instanceof ByteBufHolder h) {
      return h.content().readableBytes();
    }
    return 0;
  }

  @Sharable
  private final class ByteCounter extends ChannelDuplexHandler {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      bytesReceived.add(size(msg));
      ctx.fireChannelRead(msg);
    }

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
      bytesSent.add(size(msg));
      ctx.write(msg, promise);
    }
  }

  @Sharable
  private final class ErrorCounter extends ChannelOutboundHandlerAdapter {
    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
      if (msg instanceof Message m && m.type() == MessageType.ERROR && m.meta() instanceof ErrorReply e
          && e.code() != null) {
        errorsSent[e.code().ordinal()].increment();
      }
      ctx.write(msg, promise);
    }
  }
}
