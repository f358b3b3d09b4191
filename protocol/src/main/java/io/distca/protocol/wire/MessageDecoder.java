package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.tensor.TensorSet;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.MessageToMessageDecoder;
import java.util.List;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.OutOfMemoryException;

/**
 * Turns a {@link RawFrame} into a {@link Message}: the type code into a {@link MessageType}, the
 * JSON into the type's metadata record ({@link Json}), the Arrow payload into tensor views over the
 * frame's own memory ({@link TensorPayload#decode}; the payload is wrapped as an ArrowBuf accounted
 * to {@link WireOptions#allocator()}, not copied, when it is a direct buffer).
 *
 * <p>A bad frame becomes a {@link DecodeFailure} carrying its request id, never an exception, and
 * leaves the connection usable: UNKNOWN_MESSAGE_TYPE, INVALID_METADATA (naming the JSON field),
 * INVALID_PAYLOAD (naming the tensor), OVERLOADED when the allocator has no room for the payload.
 *
 * <p><b>Ownership.</b> A decoded message owns its payload memory: the receiver must close it (which
 * releases the network buffer) once done with its tensors.
 */
@Sharable
public final class MessageDecoder extends MessageToMessageDecoder<RawFrame> {
  private final BufferAllocator allocator;
  private final long overloadRetryAfterMs;

  public MessageDecoder(WireOptions options) {
    super(RawFrame.class);
    options.conclude();
    this.allocator = options.allocator();
    this.overloadRetryAfterMs = options.overloadRetryAfterMs();
  }

  @Override
  protected void decode(ChannelHandlerContext ctx, RawFrame frame, List<Object> out) {
    out.add(decode(frame));
  }

  /** A {@link Message} or a {@link DecodeFailure}; {@code frame} stays owned by the caller. */
  Object decode(RawFrame frame) {
    FrameHeader header = frame.header();
    MessageType type = MessageType.fromCode(header.typeCode());
    try {
      if (type == null) {
        throw new ProtocolException(ErrorCode.UNKNOWN_MESSAGE_TYPE, "type", "unknown message type code " + header.typeCode());
      }
      if (type.carriesTensors() != header.payloadPresent()) {
        throw new ProtocolException(ErrorCode.INVALID_PAYLOAD, null, type
            + (type.carriesTensors() ? " must carry a tensor payload" : " must not carry a payload"));
      }
      Object meta = Json.read(frame.meta(), type.metaClass());
      TensorSet tensors = type.carriesTensors() ? TensorPayload.decode(wrapPayload(frame)) : null;
      return new Message(type, header.requestId(), header.flags(), meta, tensors);
    } catch (ProtocolException e) {
      return new DecodeFailure(header.requestId(), type, e);
    } catch (RuntimeException e) {
      return new DecodeFailure(header.requestId(), type,
          new ProtocolException(ErrorCode.INTERNAL, null, "decoding " + frame + " failed: " + e, 0, e));
    }
  }

  private ArrowBuf wrapPayload(RawFrame frame) {
    try {
      return ArrowBufs.of(allocator, frame.payload());
    } catch (OutOfMemoryException e) {
      throw new ProtocolException(ErrorCode.OVERLOADED, null, "no memory to receive a payload of "
          + frame.payload().readableBytes() + " bytes (allocator '" + allocator.getName() + "' holds "
          + allocator.getAllocatedMemory() + " of " + allocator.getLimit() + " bytes)", overloadRetryAfterMs, e);
    }
  }
}
