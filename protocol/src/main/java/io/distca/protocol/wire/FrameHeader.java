package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.netty.buffer.ByteBuf;

/**
 * The fixed 32-byte frame header (docs/protocol.md, "Frame layout"). All fields are big-endian.
 *
 * <pre>
 * offset size field
 *  0     4    magic          0x44434131 ("DCA1")
 *  4     1    version        1
 *  5     1    message type   MessageType code
 *  6     2    flags          bit 0 = payload present, bits 1-15 reserved (0)
 *  8     8    request id     chosen by the requester, echoed by its response or ERROR
 * 16     4    meta length    bytes of UTF-8 JSON metadata after the header (unsigned)
 * 20     4    payload length bytes of Arrow IPC stream after the padding (unsigned)
 * 24     8    reserved       0
 * </pre>
 *
 * <p>There is no header checksum: it would guard 32 bytes of a frame whose other up to 256 MiB are
 * left to the transport (TCP, TLS); the magic, the zero reserved bits and the zero padding already
 * catch the realistic failure, a peer that lost its place in the stream.
 */
public record FrameHeader(int typeCode, int flags, long requestId, long metaLength, long payloadLength) {
  public static final int MAGIC = 0x44434131;
  public static final int VERSION = 1;
  public static final int BYTES = 32;
  /** Metadata is padded with zeros so that the payload starts at a multiple of this from the frame start. */
  public static final int ALIGNMENT = 8;
  public static final int FLAG_PAYLOAD_PRESENT = 1;
  public static final int RESERVED_FLAGS = 0xffff & ~FLAG_PAYLOAD_PRESENT;

  static final int VERSION_OFFSET = 4;
  static final int TYPE_OFFSET = 5;
  static final int FLAGS_OFFSET = 6;
  static final int REQUEST_ID_OFFSET = 8;
  static final int META_LENGTH_OFFSET = 16;
  static final int PAYLOAD_LENGTH_OFFSET = 20;
  static final int RESERVED_OFFSET = 24;

  /** A header for an outgoing frame; the payload-present flag follows from the payload length. */
  public static FrameHeader outgoing(int typeCode, long requestId, long metaLength, long payloadLength) {
    return new FrameHeader(typeCode, payloadLength > 0 ? FLAG_PAYLOAD_PRESENT : 0, requestId, metaLength, payloadLength);
  }

  /**
   * Reads the header at {@code index} (32 readable bytes required) after checking the two fields
   * whose meaning does not depend on the version: magic and version.
   *
   * @throws ProtocolException MALFORMED_FRAME for a bad magic, UNSUPPORTED_VERSION for another version
   */
  public static FrameHeader read(ByteBuf in, int index) {
    int magic = in.getInt(index);
    if (magic != MAGIC) {
      throw new ProtocolException(ErrorCode.MALFORMED_FRAME, "magic",
          String.format("bad magic 0x%08x, expected 0x%08x (\"DCA1\")", magic, MAGIC));
    }
    int version = in.getUnsignedByte(index + VERSION_OFFSET);
    if (version != VERSION) {
      throw new ProtocolException(ErrorCode.UNSUPPORTED_VERSION, "version",
          "frame version " + version + ", this peer speaks version " + VERSION);
    }
    FrameHeader header = new FrameHeader(
        in.getUnsignedByte(index + TYPE_OFFSET),
        in.getUnsignedShort(index + FLAGS_OFFSET),
        in.getLong(index + REQUEST_ID_OFFSET),
        in.getUnsignedInt(index + META_LENGTH_OFFSET),
        in.getUnsignedInt(index + PAYLOAD_LENGTH_OFFSET));
    long reserved = in.getLong(index + RESERVED_OFFSET);
    if (reserved != 0) {
      throw new ProtocolException(ErrorCode.MALFORMED_FRAME, "reserved",
          String.format("header bytes 24-31 are reserved and must be 0, got 0x%016x", reserved));
    }
    return header;
  }

  /**
   * The request id of a header that failed {@link #read} or {@link #check}, when its position is
   * known (magic and version are right), else 0, the id of connection-level errors.
   */
  public static long requestIdOrZero(ByteBuf in, int index) {
    boolean layoutKnown = in.getInt(index) == MAGIC && in.getUnsignedByte(index + VERSION_OFFSET) == VERSION;
    return layoutKnown ? in.getLong(index + REQUEST_ID_OFFSET) : 0;
  }

  /**
   * Checks flags and lengths against this peer's limit, from the header alone (before any body
   * byte is buffered).
   *
   * @throws ProtocolException MALFORMED_FRAME or FRAME_TOO_LARGE
   */
  public void check(long maxFrameBytes) {
    if ((flags & RESERVED_FLAGS) != 0) {
      throw new ProtocolException(ErrorCode.MALFORMED_FRAME, "flags",
          String.format("reserved flag bits set: 0x%04x (only bit 0, payload present, is defined)", flags));
    }
    boolean payloadFlag = (flags & FLAG_PAYLOAD_PRESENT) != 0;
    if (payloadFlag != (payloadLength > 0)) {
      throw new ProtocolException(ErrorCode.MALFORMED_FRAME, "flags",
          "payload-present flag is " + (payloadFlag ? "set" : "clear") + " but payload length is " + payloadLength);
    }
    if (frameLength() > maxFrameBytes) {
      throw new ProtocolException(ErrorCode.FRAME_TOO_LARGE, null,
          "frame of " + frameLength() + " bytes (metadata " + metaLength + ", payload " + payloadLength
              + ") exceeds this peer's maximum of " + maxFrameBytes + " bytes");
    }
  }

  /** Zero bytes between the metadata and the payload. */
  public int padding() {
    return paddingAfter(BYTES + metaLength);
  }

  /** Header, metadata, padding and payload. */
  public long frameLength() {
    return BYTES + metaLength + padding() + payloadLength;
  }

  public boolean payloadPresent() {
    return (flags & FLAG_PAYLOAD_PRESENT) != 0;
  }

  public void writeTo(ByteBuf out) {
    out.writeInt(MAGIC);
    out.writeByte(VERSION);
    out.writeByte(typeCode);
    out.writeShort(flags);
    out.writeLong(requestId);
    out.writeInt((int) metaLength);
    out.writeInt((int) payloadLength);
    out.writeLong(0);
  }

  static int paddingAfter(long length) {
    return (int) ((ALIGNMENT - (length % ALIGNMENT)) % ALIGNMENT);
  }
}
