package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.Tensor;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/**
 * Per test: a fresh Arrow allocator that must be empty at the end (a leaked tensor or payload fails
 * its close), every channel finished with nothing left unconsumed, every input buffer released, and
 * no Netty leak report.
 */
abstract class WireTestBase {
  static {
    NettyLeaks.install();
  }

  protected BufferAllocator allocator;
  private final List<EmbeddedChannel> channels = new ArrayList<>();
  private final List<ByteBuf> inputs = new ArrayList<>();

  @BeforeEach
  void openAllocator() {
    allocator = new RootAllocator(Long.MAX_VALUE);
  }

  @AfterEach
  void checkNothingLeaked() {
    List<String> leftovers = new ArrayList<>();
    for (EmbeddedChannel channel : channels) {
      for (Object o; (o = channel.readInbound()) != null; ) {
        leftovers.add("inbound " + o);
        closeIfMessage(o);
      }
      for (Object o; (o = channel.readOutbound()) != null; ) {
        leftovers.add("outbound " + o);
        io.netty.util.ReferenceCountUtil.release(o);
      }
      channel.finishAndReleaseAll();
    }
    for (ByteBuf input : inputs) {
      if (input.refCnt() != 0) {
        leftovers.add("input buffer still referenced (refCnt " + input.refCnt() + ")");
      }
    }
    allocator.close(); // throws when tensor memory leaked
    NettyLeaks.assertNoLeaks();
    if (!leftovers.isEmpty()) {
      fail("test left unconsumed or unreleased objects: " + leftovers);
    }
  }

  protected WireOptions options() {
    return new WireOptions().allocator(allocator);
  }

  protected EmbeddedChannel channel() {
    return channel(options());
  }

  protected EmbeddedChannel channel(WireOptions options) {
    EmbeddedChannel channel = new EmbeddedChannel();
    ProtocolCodec.install(channel.pipeline(), options);
    channels.add(channel);
    return channel;
  }

  /** Encodes {@code message} through a codec channel and returns the frame's bytes. */
  protected byte[] encode(Message message) {
    EmbeddedChannel channel = channel();
    channel.writeOutbound(message);
    ByteBuf frame = channel.readOutbound();
    try {
      return io.netty.buffer.ByteBufUtil.getBytes(frame);
    } finally {
      frame.release();
    }
  }

  /** A tracked input buffer: heap or direct copy of {@code bytes}, checked for release at the end. */
  protected ByteBuf input(byte[] bytes, boolean direct) {
    ByteBuf buf = direct ? Unpooled.directBuffer(bytes.length) : Unpooled.buffer(bytes.length);
    buf.writeBytes(bytes);
    inputs.add(buf);
    return buf;
  }

  protected ByteBuf input(byte[] bytes) {
    return input(bytes, false);
  }

  /** Feeds {@code bytes} whole into a new codec channel and returns the single decoded object. */
  protected Object decodeOne(byte[] bytes) {
    EmbeddedChannel channel = channel();
    channel.writeInbound(input(bytes));
    Object decoded = channel.readInbound();
    assertNotNull(decoded, "nothing decoded");
    Object extra = channel.readInbound();
    closeIfMessage(extra);
    assertNull(extra, "more than one object decoded");
    return decoded;
  }

  protected Message decodeMessage(byte[] bytes) {
    Object decoded = decodeOne(bytes);
    if (decoded instanceof DecodeFailure failure) {
      fail("expected a message, got " + failure, failure.error());
    }
    return assertInstanceOf(Message.class, decoded);
  }

  /** Decodes {@code bytes}, expects a failure with {@code code}, and returns it. */
  protected DecodeFailure decodeFailure(byte[] bytes, ErrorCode code) {
    Object decoded = decodeOne(bytes);
    closeIfMessage(decoded);
    DecodeFailure failure = assertInstanceOf(DecodeFailure.class, decoded, "expected a DecodeFailure");
    assertEquals(code, failure.error().code(), failure.toString());
    return failure;
  }

  protected static void closeIfMessage(Object o) {
    if (o instanceof Message m) {
      m.close();
    }
  }

  // ---- deterministic tensors

  /** Element {@code i} of the test pattern {@code seed}: mixed signs and magnitudes, special values first. */
  static float patternValue(long seed, long i) {
    if (i == 0) {
      return -0.0f;
    }
    if (i == 1) {
      return Float.POSITIVE_INFINITY;
    }
    long h = (i * 0x9E3779B97F4A7C15L + seed * 0xBF58476D1CE4E5B9L) >>> 40;
    return ((h % 20001) - 10000) / 128f;
  }

  static Tensor patternTensor(BufferAllocator allocator, DType dtype, long seed, int... shape) {
    Tensor t = Tensor.allocate(allocator, dtype, shape);
    for (long i = 0; i < t.numel(); i++) {
      if (dtype == DType.INT32) {
        t.setInt(i, (int) (patternValue(seed, i + 2) * 1000));
      } else {
        t.setFloat(i, patternValue(seed, i));
      }
    }
    return t;
  }

  /** Raw bits (zero-extended 16-bit or 32-bit) of element {@code i} of pattern {@code seed} in {@code dtype}. */
  static int patternBits(DType dtype, long seed, long i) {
    return switch (dtype) {
      case BF16 -> HalfFloats.floatToBf16(patternValue(seed, i)) & 0xffff;
      case FP16 -> HalfFloats.floatToFp16(patternValue(seed, i)) & 0xffff;
      case FP32 -> Float.floatToRawIntBits(patternValue(seed, i));
      case INT32 -> (int) (patternValue(seed, i + 2) * 1000);
    };
  }

  /** Checks dtype, shape and every element's exact bits against {@link #patternTensor}. */
  static void assertPattern(Tensor t, DType dtype, long seed, int... shape) {
    assertEquals(dtype, t.dtype());
    assertEquals(java.util.Arrays.toString(shape), java.util.Arrays.toString(t.shape()));
    for (long i = 0; i < t.numel(); i++) {
      long at = t.byteOffset() + i * dtype.byteSize();
      int actual = dtype.byteSize() == 2 ? t.buffer().getShort(at) & 0xffff : t.buffer().getInt(at);
      assertEquals(patternBits(dtype, seed, i), actual, dtype + " element " + i);
    }
  }
}
