package io.distca.server;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.testkit.FrameMutator;
import io.distca.protocol.testkit.FrameSpec;
import io.distca.protocol.testkit.FuzzStats;
import io.distca.protocol.testkit.RawPeer;
import io.distca.protocol.testkit.SeedFrames;
import io.distca.protocol.testkit.ShallowStack;
import io.distca.protocol.transport.ConnectionLimits;
import io.distca.protocol.wire.DecodeFailure;
import io.distca.protocol.wire.NettyLeaks;
import io.distca.protocol.wire.ProtocolCodec;
import io.distca.protocol.wire.WireOptions;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.cpu.CpuBackend;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The mutation fuzzer against an attention server's input path, two ways.
 *
 * <p>{@link #decoderValidatorAndBackendSurviveEveryMutation}: 100,000 cases through the codec
 * (EmbeddedChannel) and, for every attention request that decodes, the {@link RequestValidator}; a
 * request the validator accepts is then run on the CPU backend, which must take whatever the
 * validator lets through. No case may end in INTERNAL (an unexpected exception) anywhere.
 *
 * <p>{@link #aLiveServerAnswersEveryFrameAndStillServesAfterTheStorm}: a smaller share over real
 * loopback connections to a running {@link AttentionServer}, through its HELLO gate, session,
 * validator, rebatcher and backend: every complete frame gets exactly one answer (a typed ERROR,
 * PONG, or a response), a framing violation gets its typed ERROR and the connection closes, and after
 * the storm a valid request is answered bit for bit as before it.
 *
 * <p>Both end with every allocator empty and no Netty leak report. Cases:
 * {@code -Ddistca.fuzz.cases} (default 100,000) and {@code -Ddistca.fuzz.liveCases} (default
 * 5,000); seed: {@code -Ddistca.fuzz.seed}.
 */
class RequestFuzzTest {
  static {
    NettyLeaks.install();
  }

  private static final int CASES = Integer.getInteger("distca.fuzz.cases", 100_000);
  private static final int LIVE_CASES = Integer.getInteger("distca.fuzz.liveCases", 5_000);
  private static final long SEED = Long.getLong("distca.fuzz.seed", 0xD15CA2L);
  private static final long MAX_FRAME_BYTES = 1 << 20;
  private static final String TOKEN = "fuzz-token";

  @Test
  void decoderValidatorAndBackendSurviveEveryMutation() throws Exception {
    ShallowStack.run("request-fuzz", this::fuzzDecoderValidatorBackend);
  }

  private void fuzzDecoderValidatorBackend() {
    FuzzStats stats = new FuzzStats("request fuzz (codec + RequestValidator + CPU backend)");
    SplittableRandom rnd = new SplittableRandom(SEED);
    RequestValidator validator = new RequestValidator(RequestLimits.DEFAULT);
    try (BufferAllocator root = new RootAllocator(); CpuBackend backend = new CpuBackend()) {
      List<SeedFrames.Seed> seeds = SeedFrames.all(root, rnd.split(), 48, TOKEN);
      FrameMutator fuzzer = new FrameMutator(seeds, SEED, 0.03);
      try (BufferAllocator receive = root.newChildAllocator("receive", 0, Long.MAX_VALUE);
          BufferAllocator outputs = root.newChildAllocator("outputs", 0, Long.MAX_VALUE)) {
        EmbeddedChannel channel = null;
        for (int i = 0; i < CASES; i++) {
          FrameMutator.Case c = fuzzer.next();
          stats.countCase(c);
          if (channel == null) {
            channel = new EmbeddedChannel();
            ProtocolCodec.install(channel.pipeline(), new WireOptions().allocator(receive).maxFrameBytes(MAX_FRAME_BYTES));
          }
          FrameSpec.Framing expected = FrameSpec.split(c.bytes(), MAX_FRAME_BYTES);
          channel.writeInbound(Unpooled.wrappedBuffer(c.bytes()));
          try {
            for (Object o; (o = channel.readInbound()) != null; ) {
              stats.countFrame(serve(o, validator, backend, outputs));
            }
          } catch (AssertionError | RuntimeException e) {
            fail("case " + i + " (" + c.mutation() + " of " + c.seed() + ", starts "
                + HexFormat.of().formatHex(c.bytes(), 0, Math.min(96, c.bytes().length)) + "): " + e, e);
          }
          if (expected.violation() != null || expected.incomplete()) {
            channel.finishAndReleaseAll();
            channel = null;
          }
        }
        if (channel != null) {
          channel.finishAndReleaseAll();
        }
        assertEquals(0, receive.getAllocatedMemory(), "received payloads still held");
        assertEquals(0, outputs.getAllocatedMemory(), "output tensors still held");
      }
    }
    NettyLeaks.assertNoLeaks();
    System.out.println(stats.report());
    assertTrue(stats.outcome("validated and computed: FORWARD_REQUEST") > 0, "no forward request got through");
    assertTrue(stats.outcome("validated and computed: BACKWARD_REQUEST") > 0, "no backward request got through");
  }

  /** What the server's input path makes of one decoded object; closes it. */
  private static String serve(Object decoded, RequestValidator validator, CpuBackend backend, BufferAllocator outputs) {
    if (decoded instanceof DecodeFailure f) {
      assertNotEquals(ErrorCode.INTERNAL, f.error().code(), "decoder: " + f);
      return "codec: " + f.error().code() + (f.closesConnection() ? " (closes)" : "");
    }
    Message m = (Message) decoded;
    if (m.type() != MessageType.FORWARD_REQUEST && m.type() != MessageType.BACKWARD_REQUEST) {
      m.close();
      return "codec: decoded " + m.type() + " (not a request for the validator)";
    }
    PreparedRequest prepared;
    try {
      prepared = validator.prepare(m, outputs);
    } catch (ProtocolException e) {
      assertNotEquals(ErrorCode.INTERNAL, e.code(), "validator: " + e.getMessage());
      assertFalse(e.detail().isBlank(), "an error without a message: " + e);
      return "validator: " + e.code();
    }
    try (prepared) {
      AttentionBatch batch = new AttentionBatch(prepared.shape, prepared.segments, prepared.slices);
      if (prepared.phase == Phase.FORWARD) {
        backend.forward(batch);
      } else {
        backend.backward(batch);
      }
      return "validated and computed: " + m.type();
    }
  }

  @Test
  void aLiveServerAnswersEveryFrameAndStillServesAfterTheStorm() throws Exception {
    ShallowStack.run("live-fuzz", this::fuzzLiveServer);
  }

  private void fuzzLiveServer() throws Exception {
    FuzzStats stats = new FuzzStats("live server fuzz (loopback TCP, AttentionServer with the CPU backend)");
    SplittableRandom rnd = new SplittableRandom(SEED + 1);
    try (BufferAllocator root = new RootAllocator()) {
      ServerContext sc = new ServerContext();
      sc.host = "127.0.0.1";
      sc.port = 0;
      sc.serverId = "fuzzed";
      sc.backend = "cpu";
      sc.computeThreads = 1;
      sc.ioThreads = 1;
      sc.token = TOKEN;
      sc.batchWindowMicros = 0;
      sc.maxFrameBytes = MAX_FRAME_BYTES;
      try (AttentionServer server = new AttentionServer(sc, root)) {
        List<SeedFrames.Seed> seeds = SeedFrames.all(root, rnd.split(), 48, TOKEN);
        byte[] hello = SeedFrames.encode(root, SeedFrames.control(MessageType.HELLO, 1, TOKEN));
        byte[] probe = SeedFrames.encode(root, SeedFrames.attentionRequest(root, new SplittableRandom(99), false, 7));
        RawPeer.Reply before = answerOnNewConnection(server.port(), hello, probe);
        assertEquals(MessageType.FORWARD_RESPONSE, before.type(), String.valueOf(before));

        FrameMutator fuzzer = new FrameMutator(seeds, SEED + 1, 0.05);
        RawPeer peer = null;
        for (int i = 0; i < LIVE_CASES; i++) {
          FrameMutator.Case c = fuzzer.next();
          stats.countCase(c);
          boolean firstFrame = peer == null && rnd.nextInt(10) == 0;
          if (peer == null) {
            peer = RawPeer.connect(server.port(), Duration.ofSeconds(30));
            if (!firstFrame) {
              assertEquals(MessageType.HELLO_OK, peer.send(hello).read().type());
            }
          }
          try {
            boolean open = firstFrame ? fuzzFirstFrame(peer, c.bytes(), stats) : fuzzFrames(peer, c.bytes(), stats);
            if (!open) {
              peer.close();
              peer = null;
            }
          } catch (AssertionError | RuntimeException e) {
            fail("case " + i + (firstFrame ? " (as first frame)" : "") + " (" + c.mutation() + " of " + c.seed()
                + ", starts " + HexFormat.of().formatHex(c.bytes(), 0, Math.min(96, c.bytes().length)) + "): " + e, e);
          }
        }
        if (peer != null) {
          peer.close();
        }
        RawPeer.Reply after = answerOnNewConnection(server.port(), hello, probe);
        assertEquals(MessageType.FORWARD_RESPONSE, after.type(), String.valueOf(after));
        assertArrayEquals(before.payload(), after.payload(), "the same request answered differently after the storm");
        for (int i = 0; i < 500 && server.allocatedBytes() > 0; i++) {
          Thread.sleep(10); // the last responses are released once written
        }
        assertEquals(0, server.allocatedBytes(), "the server still holds buffers after the storm");
      }
    }
    NettyLeaks.assertNoLeaks();
    System.out.println(stats.report());
  }

  private static RawPeer.Reply answerOnNewConnection(int port, byte[] hello, byte[] request) {
    try (RawPeer p = RawPeer.connect(port, Duration.ofSeconds(30))) {
      assertEquals(MessageType.HELLO_OK, p.send(hello).read().type());
      return p.send(request).read();
    }
  }

  /**
   * Sends a case on an authenticated connection and checks the answers against the spec's framing:
   * one answer per complete frame, matched by request id, then the violation's ERROR and a close.
   * Returns whether the connection is still open.
   */
  private static boolean fuzzFrames(RawPeer peer, byte[] bytes, FuzzStats stats) {
    byte[] complete = FrameSpec.completeWithZeros(bytes, MAX_FRAME_BYTES, (int) MAX_FRAME_BYTES);
    if (complete == null) {
      peer.send(bytes);
      stats.countOther("left incomplete, client closed");
      return false;
    }
    if (complete.length > bytes.length) {
      stats.countOther("completed with zero bytes");
    }
    FrameSpec.Framing framing = FrameSpec.split(complete, MAX_FRAME_BYTES);
    peer.send(complete);
    Map<Long, List<FrameSpec.Frame>> unanswered = new HashMap<>();
    for (FrameSpec.Frame f : framing.frames()) {
      unanswered.computeIfAbsent(f.requestId(), k -> new ArrayList<>()).add(f);
    }
    int expected = framing.frames().size();
    if (framing.violation() == null) {
      for (int k = 0; k < expected; k++) {
        RawPeer.Reply reply = peer.read();
        assertNotNull(reply, "the server closed a connection with no framing violation");
        stats.countFrame(answer(reply, unanswered));
      }
      return true;
    }
    // before the violation's ERROR and the close, answers to earlier frames may come or be lost
    boolean violationAnswered = false;
    for (RawPeer.Reply reply; (reply = peer.read()) != null; ) {
      if (reply.type() == MessageType.ERROR && reply.error().code() == framing.violation()
          && reply.requestId() == framing.violationRequestId() && !violationAnswered) {
        violationAnswered = true;
        stats.countFrame("error: " + framing.violation() + " (closes)");
      } else {
        assertFalse(violationAnswered, "an answer after the connection-closing ERROR: " + reply);
        stats.countFrame(answer(reply, unanswered));
      }
    }
    assertTrue(violationAnswered, "no " + framing.violation() + " before the close");
    return false;
  }

  /** The answer to one of the sent frames: a typed ERROR (never INTERNAL), a PONG, or the request's response. */
  private static String answer(RawPeer.Reply reply, Map<Long, List<FrameSpec.Frame>> unanswered) {
    List<FrameSpec.Frame> candidates = unanswered.get(reply.requestId());
    assertTrue(candidates != null && !candidates.isEmpty(), "an answer to no frame sent (or a second one): " + reply);
    FrameSpec.Frame frame = candidates.remove(0);
    MessageType sent = MessageType.fromCode(frame.typeCode());
    if (reply.type() == MessageType.ERROR) {
      ErrorReply e = reply.error();
      assertNotEquals(ErrorCode.INTERNAL, e.code(), "server: " + e);
      assertFalse(e.code().closesConnection(), "a well-framed frame closed the connection: " + e);
      return "error: " + e.code();
    }
    if (sent == MessageType.PING) {
      assertEquals(MessageType.PONG, reply.type());
    } else {
      assertTrue(sent == MessageType.FORWARD_REQUEST && reply.type() == MessageType.FORWARD_RESPONSE
          || sent == MessageType.BACKWARD_REQUEST && reply.type() == MessageType.BACKWARD_RESPONSE,
          sent + " answered with " + reply.type());
    }
    return "answered: " + reply.type();
  }

  /**
   * Sends a case as the first frame of a connection: a HELLO with the token is accepted (and the rest
   * served as usual); anything else gets exactly one ERROR that closes the connection.
   */
  private static boolean fuzzFirstFrame(RawPeer peer, byte[] bytes, FuzzStats stats) {
    long unauthenticatedLimit = ConnectionLimits.DEFAULT_UNAUTHENTICATED_MAX_FRAME_BYTES;
    byte[] complete = FrameSpec.completeWithZeros(bytes, unauthenticatedLimit, (int) unauthenticatedLimit);
    if (complete == null) {
      peer.send(bytes);
      stats.countOther("first frame left incomplete, client closed");
      return false;
    }
    peer.send(complete);
    RawPeer.Reply reply = peer.read();
    assertNotNull(reply, "closed without a refusal");
    if (reply.type() == MessageType.HELLO_OK) {
      stats.countFrame("first frame: HELLO accepted");
      // the rest of the case, if any, is served as on any authenticated connection
      FrameSpec.Framing framing = FrameSpec.split(complete, unauthenticatedLimit);
      int rest = framing.frames().get(0).length();
      return rest == complete.length || fuzzFrames(peer, java.util.Arrays.copyOfRange(complete, rest, complete.length), stats);
    }
    ErrorReply e = reply.error();
    assertTrue(e.code().closesConnection(), "a refusal that does not close: " + e);
    assertTrue(peer.closesWithoutAnotherFrame());
    stats.countFrame("first frame refused: " + e.code());
    return false;
  }
}
