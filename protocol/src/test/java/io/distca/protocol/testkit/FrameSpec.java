package io.distca.protocol.testkit;

import io.distca.protocol.message.ErrorCode;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Section 2 of docs/protocol.md as an executable model, written from the text and not from the
 * decoder: how a receiver must cut a byte stream into frames and which framing violation (section
 * 2.2, the checks that close the connection) it must report. The fuzzers compare what the real
 * decoder does with what this model predicts.
 */
public final class FrameSpec {
  public static final int MAGIC = 0x44434131;
  public static final int HEADER_BYTES = 32;

  private FrameSpec() {}

  /** One complete frame of a stream whose header passed the framing checks. */
  public record Frame(int offset, int length, int typeCode, int flags, long requestId, int metaLength, int payloadLength) {}

  /**
   * What a receiver makes of a stream: the complete frames, in order, then at most one of a framing
   * violation (with the request id the ERROR must carry) or an incomplete frame (the receiver waits
   * for {@code needBytes} in all from the incomplete frame's start).
   */
  public record Framing(List<Frame> frames, ErrorCode violation, long violationRequestId, int incompleteOffset, long needBytes) {
    public boolean incomplete() {
      return needBytes > 0;
    }
  }

  public static Framing split(byte[] stream, long maxFrameBytes) {
    ByteBuffer b = ByteBuffer.wrap(stream);
    List<Frame> frames = new ArrayList<>();
    int pos = 0;
    while (pos < stream.length) {
      int remaining = stream.length - pos;
      if (remaining < HEADER_BYTES) {
        return new Framing(frames, null, 0, pos, HEADER_BYTES);
      }
      if (b.getInt(pos) != MAGIC) {
        return new Framing(frames, ErrorCode.MALFORMED_FRAME, 0, pos, 0);
      }
      if ((stream[pos + 4] & 0xff) != 1) {
        return new Framing(frames, ErrorCode.UNSUPPORTED_VERSION, 0, pos, 0);
      }
      long requestId = b.getLong(pos + 8);
      int flags = b.getShort(pos + 6) & 0xffff;
      long metaLength = b.getInt(pos + 16) & 0xffffffffL;
      long payloadLength = b.getInt(pos + 20) & 0xffffffffL;
      if (b.getLong(pos + 24) != 0 || (flags & 0xfffe) != 0 || ((flags & 1) != 0) != (payloadLength > 0)) {
        return new Framing(frames, ErrorCode.MALFORMED_FRAME, requestId, pos, 0);
      }
      long padding = (8 - (HEADER_BYTES + metaLength) % 8) % 8;
      long length = HEADER_BYTES + metaLength + padding + payloadLength;
      if (length > maxFrameBytes) {
        return new Framing(frames, ErrorCode.FRAME_TOO_LARGE, requestId, pos, 0);
      }
      if (remaining < length) {
        return new Framing(frames, null, 0, pos, length);
      }
      int paddingStart = (int) (pos + HEADER_BYTES + metaLength);
      for (int i = 0; i < padding; i++) {
        if (stream[paddingStart + i] != 0) {
          return new Framing(frames, ErrorCode.MALFORMED_FRAME, requestId, pos, 0);
        }
      }
      frames.add(new Frame(pos, (int) length, stream[pos + 5] & 0xff, flags, requestId, (int) metaLength,
          (int) payloadLength));
      pos += (int) length;
    }
    return new Framing(frames, null, 0, pos, 0);
  }

  /**
   * {@code stream} with zero bytes appended until no frame is left incomplete, for transports where
   * an incomplete frame would leave the receiver waiting; null when that needs more than
   * {@code maxAppended} bytes.
   */
  public static byte[] completeWithZeros(byte[] stream, long maxFrameBytes, int maxAppended) {
    byte[] s = stream;
    while (true) {
      Framing f = split(s, maxFrameBytes);
      if (!f.incomplete()) {
        return s;
      }
      long target = f.incompleteOffset() + f.needBytes();
      if (target - stream.length > maxAppended) {
        return null;
      }
      s = Arrays.copyOf(s, (int) target);
    }
  }
}
