package io.distca.protocol.message;

import io.distca.protocol.tensor.TensorSet;
import java.util.Objects;

/**
 * A decoded (or to-be-encoded) frame: type, request id, flags, typed metadata and, for data
 * messages, tensors. Received tensors view the network buffer: close the message to release it.
 */
public final class Message implements AutoCloseable {
  private final MessageType type;
  private final long requestId;
  private final int flags;
  private final Object meta;
  private final TensorSet tensors;

  public Message(MessageType type, long requestId, int flags, Object meta, TensorSet tensors) {
    this.type = Objects.requireNonNull(type, "type");
    this.requestId = requestId;
    this.flags = flags;
    this.meta = Objects.requireNonNull(meta, "meta");
    if (!type.metaClass().isInstance(meta)) {
      throw new IllegalArgumentException(type + " needs " + type.metaClass().getSimpleName() + " metadata, got " + meta.getClass().getSimpleName());
    }
    this.tensors = tensors;
  }

  public static Message of(MessageType type, long requestId, Object meta) {
    return new Message(type, requestId, 0, meta, null);
  }

  public static Message of(MessageType type, long requestId, Object meta, TensorSet tensors) {
    return new Message(type, requestId, 0, meta, tensors);
  }

  public static Message error(long requestId, ProtocolException e) {
    return of(MessageType.ERROR, requestId, e.toReply());
  }

  public MessageType type() {
    return type;
  }

  public long requestId() {
    return requestId;
  }

  public int flags() {
    return flags;
  }

  public Object meta() {
    return meta;
  }

  public <T> T meta(Class<T> cls) {
    return cls.cast(meta);
  }

  /** Null for control messages. */
  public TensorSet tensors() {
    return tensors;
  }

  @Override
  public void close() {
    if (tensors != null) {
      tensors.close();
    }
  }

  @Override
  public String toString() {
    return type + "#" + requestId;
  }
}
