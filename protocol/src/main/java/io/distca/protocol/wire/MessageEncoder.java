package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.MessageToMessageEncoder;
import java.util.List;

/**
 * Encodes a {@link Message} into one frame without copying tensor bytes: header, JSON metadata,
 * padding and the Arrow metadata go into small pooled buffers, each tensor's values are appended as
 * a buffer wrapping the tensor's own memory, all in one composite buffer that a gathering write
 * sends.
 *
 * <p><b>Ownership.</b> Writing a message hands it to the encoder. The encoded buffer owns the
 * message and closes it (releasing its tensors) when Netty releases the buffer: after the bytes are
 * written to the socket, or when the write fails or the channel closes. If encoding fails (for
 * example a tensor message without tensors, or a frame above {@link WireOptions#maxFrameBytes()},
 * reported as LIMIT_EXCEEDED) the message is closed at once and the write's promise fails. Either
 * way the caller must neither close nor touch the message after {@code write}, and must keep the
 * tensors' memory valid (no reuse of the buffers) until then. The flags of a message are ignored
 * except for validation: the encoder sets the payload-present bit itself.
 */
@Sharable
public final class MessageEncoder extends MessageToMessageEncoder<Message> {
  private final long maxFrameBytes;

  public MessageEncoder(WireOptions options) {
    super(Message.class);
    this.maxFrameBytes = options.conclude().maxFrameBytes();
  }

  @Override
  protected void encode(ChannelHandlerContext ctx, Message message, List<Object> out) {
    MessageOwningByteBuf frame = new MessageOwningByteBuf(ctx.alloc(), message);
    FrameAssembler assembler = new FrameAssembler(ctx.alloc(), frame);
    try {
      write(message, assembler);
      out.add(assembler.finish());
    } catch (RuntimeException | Error e) {
      assembler.abandon();
      frame.release();
      throw e;
    }
  }

  private void write(Message message, FrameAssembler assembler) {
    MessageType type = message.type();
    if ((message.flags() & FrameHeader.RESERVED_FLAGS) != 0) {
      throw new IllegalArgumentException(String.format("%s: reserved flag bits set: 0x%04x", message, message.flags()));
    }
    if (type.carriesTensors() != (message.tensors() != null)) {
      throw new IllegalArgumentException(message + (type.carriesTensors() ? " needs tensors" : " must not carry tensors"));
    }
    EncodedPayload payload = message.tensors() == null ? null : TensorPayload.encode(message.tensors());
    long payloadLength = payload == null ? 0 : payload.length();

    ByteBuf head = assembler.scratch();
    int headerStart = head.writerIndex();
    head.writeZero(FrameHeader.BYTES);
    int metaLength = Json.write(message.meta(), head);
    FrameHeader header = FrameHeader.outgoing(type.code(), message.requestId(), metaLength, payloadLength);
    if (header.frameLength() > maxFrameBytes) {
      throw new ProtocolException(ErrorCode.LIMIT_EXCEEDED, null, message + " encodes to " + header.frameLength()
          + " bytes (metadata " + metaLength + ", payload " + payloadLength + "), above the maximum frame of "
          + maxFrameBytes + " bytes");
    }
    int end = head.writerIndex();
    head.writerIndex(headerStart);
    header.writeTo(head);
    head.writerIndex(end);
    assembler.zeros(header.padding());
    if (payload != null) {
      payload.writeTo(assembler);
    }
  }
}
