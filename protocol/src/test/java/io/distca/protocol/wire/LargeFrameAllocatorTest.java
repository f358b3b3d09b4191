package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.Unpooled;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.arrow.memory.BufferAllocator;
import org.junit.jupiter.api.Test;

/** {@link WireOptions#largeFrameAllocator}: where the decoder assembles frames of at least 1 MiB. */
class LargeFrameAllocatorTest extends WireTestBase {
  private static final int CHUNK = 64 << 10;

  /** Hands out direct buffers of {@code extra} bytes more than asked and remembers each. */
  private static final class Recording implements LargeFrameAllocator {
    final List<ByteBuf> buffers = new ArrayList<>();
    final List<Integer> requested = new ArrayList<>();
    private final int extra;

    Recording(int extra) {
      this.extra = extra;
    }

    @Override
    public ByteBuf allocate(ByteBufAllocator channelAllocator, int bytes) {
      ByteBuf buf = UnpooledByteBufAllocator.DEFAULT.directBuffer(bytes + extra, bytes + extra);
      buffers.add(buf);
      requested.add(bytes);
      return buf;
    }
  }

  /** A FORWARD_RESPONSE whose "o" is {@code elements} fp32 values of pattern {@code seed}. */
  private byte[] largeFrame(int elements, long requestId, long seed) {
    try (BufferAllocator sender = allocator.newChildAllocator("sender", 0, Long.MAX_VALUE)) {
      TensorSet tensors = new TensorSet()
          .put("o", patternTensor(sender, DType.FP32, seed, elements))
          .put("lse", patternTensor(sender, DType.FP32, seed + 1, 3, 5));
      return encode(Message.of(MessageType.FORWARD_RESPONSE, requestId, Samples.meta(MessageType.FORWARD_RESPONSE), tensors));
    }
  }

  /** Feeds {@code stream} in 64 KiB direct chunks (so a large frame's header arrives before its body). */
  private List<Object> feed(EmbeddedChannel channel, byte[] stream) {
    for (int at = 0; at < stream.length; at += CHUNK) {
      channel.writeInbound(input(Arrays.copyOfRange(stream, at, Math.min(stream.length, at + CHUNK)), true));
    }
    List<Object> decoded = new ArrayList<>();
    for (Object o; (o = channel.readInbound()) != null; ) {
      decoded.add(o);
    }
    return decoded;
  }

  private static Map<String, byte[]> contents(Message m) {
    Map<String, byte[]> bytes = new TreeMap<>();
    for (Map.Entry<String, Tensor> e : m.tensors().asMap().entrySet()) {
      Tensor t = e.getValue();
      byte[] b = new byte[(int) t.byteSize()];
      t.buffer().getBytes(t.byteOffset(), b);
      bytes.put(e.getKey(), b);
    }
    return bytes;
  }

  @Test
  void defaultIsTheChannelAllocator() {
    assertEquals(LargeFrameAllocator.CHANNEL, new WireOptions().largeFrameAllocator());
    assertThrows(IllegalStateException.class,
        () -> new WireOptions().allocator(allocator).largeFrameAllocator(null).conclude());
  }

  @Test
  void largeFramesLandInTheSuppliedBuffersAndDecodeIdentically() {
    int elements = 300_000; // 1.2 MB of "o": above the 1 MiB large-frame threshold
    byte[] first = largeFrame(elements, 7, 11);
    byte[] second = largeFrame(elements + 5, 8, 12);
    byte[] small = encode(Message.of(MessageType.PING, 9, Samples.meta(MessageType.PING)));
    assertTrue(first.length >= FrameDecoder.LARGE_FRAME_BYTES);
    byte[] stream = Frames.concat(first, small, second);

    List<Object> plain = feed(channel(), stream);
    // Buffers larger than asked for (a pool's size class): the frame still ends where its header says.
    Recording recording = new Recording(4096);
    List<Object> hooked = feed(channel(options().largeFrameAllocator(recording)), stream);
    try {
      assertEquals(3, plain.size(), plain.toString());
      assertEquals(3, hooked.size(), hooked.toString());
      assertEquals(List.of(first.length, second.length), recording.requested, "one buffer per large frame, of its size");
      int large = 0;
      for (int i = 0; i < 3; i++) {
        Message p = assertInstanceOf(Message.class, plain.get(i), String.valueOf(plain.get(i)));
        Message h = assertInstanceOf(Message.class, hooked.get(i), String.valueOf(hooked.get(i)));
        assertEquals(p.type(), h.type());
        assertEquals(p.requestId(), h.requestId());
        if (p.tensors() == null) {
          assertNull(h.tensors());
          continue;
        }
        Map<String, byte[]> expected = contents(p);
        Map<String, byte[]> actual = contents(h);
        assertEquals(expected.keySet(), actual.keySet());
        for (String name : expected.keySet()) {
          assertArrayEquals(expected.get(name), actual.get(name), name + " of message " + h.requestId());
        }
        ByteBuf buffer = recording.buffers.get(large++);
        long start = buffer.memoryAddress();
        for (Tensor t : h.tensors().asMap().values()) {
          assertTrue(t.address() >= start && t.address() + t.byteSize() <= start + buffer.capacity(),
              t + " is a view into the supplied buffer");
        }
        assertTrue(buffer.refCnt() > 0, "the decoded message holds its frame's buffer");
      }
    } finally {
      plain.forEach(WireTestBase::closeIfMessage);
      hooked.forEach(WireTestBase::closeIfMessage);
    }
    for (ByteBuf b : recording.buffers) {
      assertEquals(0, b.refCnt(), "closing the messages released the supplied buffers");
    }
  }

  @Test
  void smallFramesNeverUseTheHook() {
    Recording recording = new Recording(0);
    byte[] frame = largeFrame(1000, 3, 5);
    List<Object> decoded = feed(channel(options().largeFrameAllocator(recording)), frame);
    decoded.forEach(WireTestBase::closeIfMessage);
    assertEquals(1, decoded.size());
    assertTrue(recording.buffers.isEmpty());
  }

  @Test
  void connectionClosedMidFrameReleasesTheSuppliedBuffer() {
    Recording recording = new Recording(0);
    byte[] frame = largeFrame(300_000, 4, 6);
    EmbeddedChannel channel = channel(options().largeFrameAllocator(recording));
    assertTrue(feed(channel, Arrays.copyOf(frame, frame.length / 2)).isEmpty());
    assertEquals(1, recording.buffers.size());
    channel.finishAndReleaseAll();
    assertEquals(0, recording.buffers.get(0).refCnt());
  }

  @Test
  void unusableOrFailingAllocatorsFallBackToTheChannelAllocator() {
    byte[] frame = largeFrame(300_000, 4, 6);
    List<Object> expected = feed(channel(), frame);
    List<ByteBuf> handedOut = new ArrayList<>();
    LargeFrameAllocator tooSmall = (alloc, bytes) -> keep(handedOut, Unpooled.directBuffer(bytes / 2, bytes / 2));
    LargeFrameAllocator heap = (alloc, bytes) -> keep(handedOut, Unpooled.buffer(bytes, bytes));
    LargeFrameAllocator notEmpty = (alloc, bytes) -> keep(handedOut, Unpooled.directBuffer(bytes + 8).writeLong(1));
    LargeFrameAllocator throwing = (alloc, bytes) -> {
      throw new IllegalStateException("pool closed");
    };
    LargeFrameAllocator nothing = (alloc, bytes) -> null;
    try {
      for (LargeFrameAllocator bad : List.of(tooSmall, heap, notEmpty, throwing, nothing)) {
        List<Object> decoded = feed(channel(options().largeFrameAllocator(bad)), frame);
        try {
          assertEquals(1, decoded.size(), decoded.toString());
          Message m = assertInstanceOf(Message.class, decoded.get(0), String.valueOf(decoded.get(0)));
          Map<String, byte[]> want = contents((Message) expected.get(0));
          Map<String, byte[]> got = contents(m);
          for (String name : want.keySet()) {
            assertArrayEquals(want.get(name), got.get(name), name);
          }
        } finally {
          decoded.forEach(WireTestBase::closeIfMessage);
        }
      }
    } finally {
      expected.forEach(WireTestBase::closeIfMessage);
    }
    assertEquals(3, handedOut.size());
    for (ByteBuf b : handedOut) {
      assertEquals(0, b.refCnt(), "a refused buffer goes back");
    }
  }

  private static ByteBuf keep(List<ByteBuf> into, ByteBuf buf) {
    into.add(buf);
    return buf;
  }
}
