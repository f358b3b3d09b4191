package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.testkit.FrameMutator;
import io.distca.protocol.testkit.FrameSpec;
import io.distca.protocol.testkit.FuzzStats;
import io.distca.protocol.testkit.SeedFrames;
import io.distca.protocol.testkit.ShallowStack;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The mutation fuzzer against the codec as every service installs it (frame decoder, message
 * decoder): each case's bytes go into a channel whole or in pieces, from heap or direct buffers, and
 * what comes out is compared with what docs/protocol.md section 2 says ({@link FrameSpec}): one
 * decoded message or typed failure per complete frame, carrying the frame's request id; the framing
 * violation the spec names, and then nothing more; never INTERNAL (an unexpected exception). At the
 * end every Arrow allocator must close empty and Netty must report no leaked buffer.
 *
 * <p>The attention server's request fuzz test sends 100,000 cases through this codec and its
 * request validator on every build; this one adds the codec-only checks (pieces, heap and direct
 * buffers, a receive allocator too small) on fewer cases. Cases: {@code -Ddistca.fuzz.codecCases}
 * (default 25,000); seed: {@code -Ddistca.fuzz.seed}.
 */
class CodecFuzzTest {
  static {
    NettyLeaks.install();
  }

  private static final int CASES = Integer.getInteger("distca.fuzz.codecCases", 25_000);
  private static final long SEED = Long.getLong("distca.fuzz.seed", 0xD15CA1L);
  private static final long MAX_FRAME_BYTES = 1 << 20;

  @Test
  void mutatedAndRandomFramesGetTheOutcomeTheSpecPrescribesAndLeakNothing() throws Exception {
    ShallowStack.run("codec-fuzz", this::fuzz);
  }

  private void fuzz() {
    FuzzStats stats = new FuzzStats("codec fuzz (EmbeddedChannel, frame + message decoder)");
    SplittableRandom rnd = new SplittableRandom(SEED);
    try (BufferAllocator root = new RootAllocator()) {
      List<SeedFrames.Seed> seeds = SeedFrames.all(root, rnd.split(), 24, "token");
      FrameMutator fuzzer = new FrameMutator(seeds, SEED, 0.03);
      // a receive allocator too small for most payloads: the OVERLOADED path
      BufferAllocator tight = root.newChildAllocator("tight", 0, 1024);
      BufferAllocator receive = root.newChildAllocator("receive", 0, Long.MAX_VALUE);
      EmbeddedChannel channel = null;
      for (int i = 0; i < CASES; i++) {
        FrameMutator.Case c = fuzzer.next();
        stats.countCase(c);
        if (channel == null) {
          channel = channel(rnd.nextInt(20) == 0 ? tight : receive);
        }
        FrameSpec.Framing expected = FrameSpec.split(c.bytes(), MAX_FRAME_BYTES);
        feed(channel, c.bytes(), rnd);
        List<Object> decoded = new ArrayList<>();
        for (Object o; (o = channel.readInbound()) != null; ) {
          decoded.add(o);
        }
        try {
          check(c, expected, decoded, stats);
        } catch (AssertionError e) {
          fail("case " + i + " (" + c.mutation() + " of " + c.seed() + ", bytes " + HexFormat.of().formatHex(c.bytes(), 0,
              Math.min(c.bytes().length, 96)) + "...): " + e.getMessage(), e);
        } finally {
          decoded.forEach(o -> {
            if (o instanceof Message m) {
              m.close();
            }
          });
        }
        if (expected.violation() != null) {
          // after a framing violation the decoder reads nothing more, even a valid frame
          feed(channel, seeds.get(0).frame(), rnd);
          assertNull(channel.readInbound(), "the decoder decoded after a framing violation");
        }
        if (expected.violation() != null || expected.incomplete()) {
          stats.countOther(expected.incomplete() ? "case left a frame incomplete (decoder waits)" : "case ended in a framing violation");
          assertFalse(channel.finishAndReleaseAll(), "objects left in the channel");
          channel = null;
        }
      }
      if (channel != null) {
        channel.finishAndReleaseAll();
      }
      assertEquals(0, receive.getAllocatedMemory(), "payload memory still held after every message was closed");
      tight.close();
      receive.close();
    }
    NettyLeaks.assertNoLeaks();
    System.out.println(stats.report());
    assertTrue(stats.frames() > CASES / 2, "most cases should reach the message decoder: " + stats.frames());
  }

  private static void check(FrameMutator.Case c, FrameSpec.Framing expected, List<Object> decoded, FuzzStats stats) {
    int frames = expected.frames().size();
    assertEquals(frames + (expected.violation() == null ? 0 : 1), decoded.size(),
        "decoded objects vs the spec's " + frames + " complete frames" + (expected.violation() == null ? "" : " + 1 violation"));
    for (int k = 0; k < frames; k++) {
      FrameSpec.Frame frame = expected.frames().get(k);
      Object o = decoded.get(k);
      if (o instanceof Message m) {
        assertEquals(frame.typeCode(), m.type().code(), "message type");
        assertEquals(frame.requestId(), m.requestId(), "request id");
        stats.countFrame("decoded: " + m.type());
      } else {
        DecodeFailure f = (DecodeFailure) o;
        assertFalse(f.closesConnection(), "a well-framed frame closed the connection: " + f);
        assertNotEquals(ErrorCode.INTERNAL, f.error().code(), "an unexpected exception while decoding: " + f);
        assertEquals(frame.requestId(), f.requestId(), "request id of the failure");
        assertFalse(f.error().detail().isBlank(), "an error without a message");
        stats.countFrame("error: " + f.error().code());
      }
    }
    if (expected.violation() != null) {
      DecodeFailure f = (DecodeFailure) decoded.get(frames);
      assertEquals(expected.violation(), f.error().code(), "framing violation: " + f);
      assertTrue(f.closesConnection());
      assertEquals(expected.violationRequestId(), f.requestId(), "request id of the framing violation");
      stats.countFrame("error: " + f.error().code() + " (closes)");
    }
  }

  private static EmbeddedChannel channel(BufferAllocator allocator) {
    EmbeddedChannel channel = new EmbeddedChannel();
    ProtocolCodec.install(channel.pipeline(), new WireOptions().allocator(allocator).maxFrameBytes(MAX_FRAME_BYTES));
    return channel;
  }

  /** Whole or in up to four pieces; heap or direct buffers (the decoder copies one, wraps the other). */
  private static void feed(EmbeddedChannel channel, byte[] bytes, SplittableRandom rnd) {
    int pieces = rnd.nextInt(5) == 0 ? 2 + rnd.nextInt(3) : 1;
    int from = 0;
    for (int p = 0; p < pieces; p++) {
      int to = p == pieces - 1 ? bytes.length : from + rnd.nextInt(bytes.length - from + 1);
      ByteBuf buf = rnd.nextBoolean() ? Unpooled.directBuffer(Math.max(1, to - from)) : Unpooled.buffer(to - from);
      buf.writeBytes(bytes, from, to - from);
      channel.writeInbound(buf);
      from = to;
    }
  }
}
