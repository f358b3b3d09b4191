package io.distca.protocol.testkit;

import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.wire.Json;
import io.netty.buffer.Unpooled;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * A plaintext TCP peer that writes raw bytes and reads frames with blocking I/O, parsing them from
 * the spec like a third-party client would: for tests that must send what no well-behaved client
 * sends, and see exactly what the server sends back (including nothing).
 */
public final class RawPeer implements AutoCloseable {
  private final Socket socket;
  private final DataInputStream in;
  private final OutputStream out;

  /** A frame read back: its header fields, metadata text and payload. */
  public record Reply(int typeCode, long requestId, String meta, byte[] payload) {
    public MessageType type() {
      return MessageType.fromCode(typeCode);
    }

    /** The ERROR's metadata; fails when this is not an ERROR. */
    public ErrorReply error() {
      if (type() != MessageType.ERROR) {
        throw new AssertionError("expected an ERROR, got " + type() + " " + meta);
      }
      return Json.read(Unpooled.wrappedBuffer(meta.getBytes(StandardCharsets.UTF_8)), ErrorReply.class);
    }

    @Override
    public String toString() {
      return type() + "#" + requestId + " " + meta + (payload.length > 0 ? " + " + payload.length + " B payload" : "");
    }
  }

  private RawPeer(Socket socket) throws IOException {
    this.socket = socket;
    this.in = new DataInputStream(socket.getInputStream());
    this.out = socket.getOutputStream();
  }

  /** Connects; every read waits at most {@code readTimeout}. */
  public static RawPeer connect(int port, Duration readTimeout) {
    try {
      Socket s = new Socket();
      s.setTcpNoDelay(true);
      s.connect(new InetSocketAddress("127.0.0.1", port), 5000);
      s.setSoTimeout((int) readTimeout.toMillis());
      return new RawPeer(s);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public RawPeer send(byte[] bytes) {
    try {
      out.write(bytes);
      out.flush();
      return this;
    } catch (IOException e) {
      throw new UncheckedIOException("write failed (did the server close?)", e);
    }
  }

  /** The next frame, or null when the server closed the connection. Fails on a read timeout. */
  public Reply read() {
    try {
      byte[] header = new byte[FrameSpec.HEADER_BYTES];
      int first = in.read();
      if (first < 0) {
        return null;
      }
      header[0] = (byte) first;
      in.readFully(header, 1, header.length - 1);
      ByteBuffer h = ByteBuffer.wrap(header);
      if (h.getInt(0) != FrameSpec.MAGIC) {
        throw new AssertionError(String.format("the server sent something that is not a frame: magic 0x%08x", h.getInt(0)));
      }
      int metaLength = h.getInt(16);
      int payloadLength = h.getInt(20);
      byte[] meta = new byte[metaLength];
      in.readFully(meta);
      in.skipNBytes((8 - (FrameSpec.HEADER_BYTES + metaLength) % 8) % 8);
      byte[] payload = new byte[payloadLength];
      in.readFully(payload);
      return new Reply(header[5] & 0xff, h.getLong(8), new String(meta, StandardCharsets.UTF_8), payload);
    } catch (SocketTimeoutException e) {
      throw new AssertionError("no frame and no close within the read timeout", e);
    } catch (EOFException e) {
      throw new AssertionError("the server closed in the middle of a frame", e);
    } catch (SocketException e) {
      return null; // reset: closed
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Whether the server closes the connection without sending anything more (within the read timeout). */
  public boolean closesWithoutAnotherFrame() {
    Reply r = read();
    if (r != null) {
      throw new AssertionError("expected the connection to close, got " + r);
    }
    return true;
  }

  /** The first bytes the server sends, as text (for checking that no HTTP ever comes back). */
  public byte[] readUpTo(int max) {
    try {
      byte[] b = new byte[max];
      int n = in.read(b);
      return n <= 0 ? new byte[0] : java.util.Arrays.copyOf(b, n);
    } catch (SocketTimeoutException e) {
      throw new AssertionError("nothing within the read timeout", e);
    } catch (IOException e) {
      return new byte[0];
    }
  }

  @Override
  public void close() {
    try {
      socket.close();
    } catch (IOException ignored) {
      // closing a socket that is already broken
    }
  }
}
