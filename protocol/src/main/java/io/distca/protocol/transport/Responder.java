package io.distca.protocol.transport;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.ProtocolException;
import io.netty.channel.Channel;

/** Answers on one connection. Safe to call from any thread. */
public final class Responder {
  private final Channel channel;
  private final String peerName;

  Responder(Channel channel, String peerName) {
    this.channel = channel;
    this.peerName = peerName;
  }

  /** Sends {@code message} (ownership passes to the channel; its tensors are released once written). */
  public void reply(Message message) {
    if (!channel.isActive()) {
      message.close();
      return;
    }
    channel.writeAndFlush(message).addListener(f -> closeIfFailed(f, message));
  }

  /** Netty releases only reference-counted messages of a failed write; a Message is closed here (idempotent). */
  private static void closeIfFailed(io.netty.util.concurrent.Future<?> write, Message message) {
    if (!write.isSuccess()) {
      message.close();
    }
  }

  /** Like {@link #reply}, then runs {@code written} once the message left (or failed to leave). */
  public void reply(Message message, Runnable written) {
    if (!channel.isActive()) {
      message.close();
      written.run();
      return;
    }
    channel.writeAndFlush(message).addListener(f -> {
      closeIfFailed(f, message);
      written.run();
    });
  }

  public void error(long requestId, ProtocolException e) {
    reply(Message.error(requestId, e));
  }

  /** The name the peer gave in its HELLO. */
  public String peerName() {
    return peerName;
  }

  public String remoteAddress() {
    return String.valueOf(channel.remoteAddress());
  }

  public boolean isWritable() {
    return channel.isWritable();
  }

  public Channel channel() {
    return channel;
  }
}
