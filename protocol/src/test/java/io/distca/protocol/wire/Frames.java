package io.distca.protocol.wire;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Frames built byte by byte from docs/protocol.md, independently of {@link FrameHeader}, so that
 * tests can write anything (including what the encoder refuses to) and read frames apart.
 */
final class Frames {
  private Frames() {}

  static byte[] frame(int typeCode, int flags, long requestId, byte[] meta, byte[] payload) {
    int padding = (8 - (32 + meta.length) % 8) % 8;
    ByteBuffer b = ByteBuffer.allocate(32 + meta.length + padding + payload.length).order(ByteOrder.BIG_ENDIAN);
    b.putInt(0x44434131).put((byte) 1).put((byte) typeCode).putShort((short) flags).putLong(requestId)
        .putInt(meta.length).putInt(payload.length).putLong(0);
    b.put(meta).put(new byte[padding]).put(payload);
    return b.array();
  }

  /** A frame with the payload-present flag set exactly when there is a payload. */
  static byte[] frame(int typeCode, long requestId, String meta, byte[] payload) {
    return frame(typeCode, payload.length > 0 ? 1 : 0, requestId, meta.getBytes(StandardCharsets.UTF_8), payload);
  }

  static byte[] frame(int typeCode, long requestId, String meta) {
    return frame(typeCode, requestId, meta, new byte[0]);
  }

  static int metaLength(byte[] frame) {
    return ByteBuffer.wrap(frame).getInt(16);
  }

  static int payloadLength(byte[] frame) {
    return ByteBuffer.wrap(frame).getInt(20);
  }

  static int payloadOffset(byte[] frame) {
    return frame.length - payloadLength(frame);
  }

  static String meta(byte[] frame) {
    return new String(frame, 32, metaLength(frame), StandardCharsets.UTF_8);
  }

  static byte[] payload(byte[] frame) {
    return Arrays.copyOfRange(frame, payloadOffset(frame), frame.length);
  }

  /** {@code frame} with its payload replaced (type, request id and metadata kept). */
  static byte[] withPayload(byte[] frame, byte[] payload) {
    ByteBuffer b = ByteBuffer.wrap(frame);
    return frame(frame[5] & 0xff, payload.length > 0 ? 1 : 0, b.getLong(8), meta(frame).getBytes(StandardCharsets.UTF_8), payload);
  }

  /** {@code frame} with its metadata replaced. */
  static byte[] withMeta(byte[] frame, String meta) {
    ByteBuffer b = ByteBuffer.wrap(frame);
    return frame(frame[5] & 0xff, b.getShort(6), b.getLong(8), meta.getBytes(StandardCharsets.UTF_8), payload(frame));
  }

  static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] all = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    return all;
  }

  /** Replaces the only occurrence of {@code find} in {@code bytes}; fails unless there is exactly one. */
  static byte[] replaceOnce(byte[] bytes, byte[] find, byte[] replacement) {
    int found = -1;
    for (int i = 0; i + find.length <= bytes.length; i++) {
      if (Arrays.equals(bytes, i, i + find.length, find, 0, find.length)) {
        if (found >= 0) {
          throw new AssertionError("pattern occurs more than once");
        }
        found = i;
      }
    }
    if (found < 0) {
      throw new AssertionError("pattern not found");
    }
    byte[] copy = bytes.clone();
    System.arraycopy(replacement, 0, copy, found, replacement.length);
    return copy;
  }

  static byte[] longsLE(long... values) {
    ByteBuffer b = ByteBuffer.allocate(8 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long v : values) {
      b.putLong(v);
    }
    return b.array();
  }
}
