package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.ByteBufAllocatorMetricProvider;
import io.netty.channel.EventLoopGroup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * Ten times more load than one server can take: every sender keeps many requests in flight at a
 * server whose admission budget holds only a few. The server must refuse the excess with OVERLOADED
 * with a retry-after (never an OutOfMemoryError, never a dropped connection), keep its buffer
 * memory under the configured bounds, and keep answering admitted requests correctly. Senders wait
 * as long as the server asks before trying again, as the trainer client does. The admitted throughput under
 * overload is measured beside the throughput at a load it can take, in the same run, and reported.
 */
class OverloadTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 64, DType.BF16, AttentionShape.defaultScale(64));
  private static final int Q = 512;

  @Test
  void tenTimesCapacityIsRefusedCleanlyWithinMemoryBounds() throws Exception {
    try (BufferAllocator root = new RootAllocator()) {
      ServerContext ctx = new ServerContext();
      ctx.host = "127.0.0.1";
      ctx.port = 0;
      ctx.backend = "cpu";
      ctx.computeThreads = 1;
      ctx.maxMemoryBytes = 64L << 20;
      ctx.maxInflightBytes = 4L << 20; // about four requests (each ~0.75 MB, charged twice)
      try (AttentionServer server = new AttentionServer(ctx, root)) {
        Load normal = drive(server.port(), root, 1, 1, Duration.ofSeconds(3));
        Load overload = drive(server.port(), root, 10, 8, Duration.ofSeconds(5));
        String report = String.format(
            "normal load (1 sender x 1 in flight): %.1f admitted req/s, %d refused%n"
                + "10 senders x 8 in flight: %.1f admitted req/s, %d refused (OVERLOADED), %d other errors%n"
                + "server buffer peak %.1f MB (cap %d MB, admission budget %d MB); Netty direct memory peak (this JVM, clients included) %.1f MB; ratio admitted throughput overload/normal %.2f%n",
            normal.admittedPerSecond(), normal.refused.get(), overload.admittedPerSecond(), overload.refused.get(),
            overload.otherErrors.get(), server.peakAllocatedBytes() / 1e6, ctx.maxMemoryBytes >> 20,
            ctx.maxInflightBytes >> 20, overload.peakDirect / 1e6, overload.admittedPerSecond() / normal.admittedPerSecond());
        System.out.print(report);
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target", "overload-report.txt"), report);

        assertEquals(0, normal.refused.get(), "one request at a time must always be admitted");
        assertTrue(overload.refused.get() > 0, "the overload never reached the admission bound");
        assertTrue(overload.admitted.get() > 0, "nothing was admitted under overload");
        assertEquals(0, overload.otherErrors.get(), "overload produced errors other than OVERLOADED");
        assertEquals(0, overload.wrong.get(), "an admitted request got a wrong answer");
        assertTrue(server.peakAllocatedBytes() <= ctx.maxMemoryBytes, "server buffers above their cap");
        // admitted work is bounded by the budget; what else is held is at most one frame being
        // decoded or refused per connection
        long perRequest = 2L * 3 * Q * SHAPE.headsQ() * SHAPE.headDim() * 2;
        assertTrue(server.peakAllocatedBytes() <= ctx.maxInflightBytes + 11 * perRequest + (4 << 20),
            "server buffers grew past admission budget plus one request per connection: " + server.peakAllocatedBytes());
        assertEquals(0, server.bytesInFlight(), "admission budget not returned after the storm");
        assertTrue(overload.peakDirect < 256L << 20, "Netty direct memory grew to " + overload.peakDirect);
        // and the server still answers
        Load after = drive(server.port(), root, 1, 1, Duration.ofMillis(500));
        assertTrue(after.admitted.get() > 0 && after.wrong.get() == 0);
      }
    }
  }

  private static final class Load {
    final AtomicLong admitted = new AtomicLong();
    final AtomicLong refused = new AtomicLong();
    final AtomicLong otherErrors = new AtomicLong();
    final AtomicLong wrong = new AtomicLong();
    long nanos;
    long peakDirect;

    double admittedPerSecond() {
      return admitted.get() / (nanos / 1e9);
    }
  }

  private static Load drive(int port, BufferAllocator root, int senders, int inflight, Duration duration) throws Exception {
    Load load = new Load();
    EventLoopGroup group = Transports.group(2, "overload-client");
    List<PeerConnection> conns = new ArrayList<>();
    try (Tensor q = random(root, 1, Q, SHAPE.headsQ()); Tensor k = random(root, 2, Q, SHAPE.headsKv());
        Tensor v = random(root, 3, Q, SHAPE.headsKv())) {
      for (int i = 0; i < senders; i++) {
        conns.add(PeerConnection.connect(group, "127.0.0.1", port, new Hello(1, "trainer", "load-" + i, ""),
            WireSetup.client(root), Duration.ofSeconds(5)).get(10, TimeUnit.SECONDS));
      }
      // the first answer is the reference every later answer must equal bit for bit
      float[] expected;
      try (Message first = send(conns.get(0), q, k, v).get(30, TimeUnit.SECONDS)) {
        expected = checksum(first.tensors().get("o"));
      }
      long end = System.nanoTime() + duration.toNanos();
      long t0 = System.nanoTime();
      List<CompletableFuture<Void>> loops = new ArrayList<>();
      for (PeerConnection c : conns) {
        for (int i = 0; i < inflight; i++) {
          CompletableFuture<Void> loop = new CompletableFuture<>();
          loops.add(loop);
          loop(c, q, k, v, end, load, expected, loop, 0);
        }
      }
      while (!CompletableFuture.allOf(loops.toArray(new CompletableFuture<?>[0])).isDone()) {
        load.peakDirect = Math.max(load.peakDirect, directBytes());
        Thread.sleep(5);
      }
      CompletableFuture.allOf(loops.toArray(new CompletableFuture<?>[0])).get();
      load.nanos = System.nanoTime() - t0;
      return load;
    } finally {
      for (PeerConnection c : conns) {
        c.close();
      }
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }
  }

  /** One sender's request loop; {@code refusedInARow} drives its backoff like the trainer client's. */
  private static void loop(PeerConnection c, Tensor q, Tensor k, Tensor v, long end, Load load, float[] expected,
      CompletableFuture<Void> done, int refusedInARow) {
    if (System.nanoTime() >= end) {
      done.complete(null);
      return;
    }
    send(c, q, k, v).whenComplete((reply, err) -> {
      if (err == null) {
        try (reply) {
          load.admitted.incrementAndGet();
          if (!java.util.Arrays.equals(expected, checksum(reply.tensors().get("o")))) {
            load.wrong.incrementAndGet();
          }
        }
      } else {
        Throwable cause = err instanceof java.util.concurrent.CompletionException && err.getCause() != null ? err.getCause() : err;
        if (cause instanceof ProtocolException pe && pe.code() == ErrorCode.OVERLOADED && pe.retryAfterMs() > 0) {
          // a well-behaved client (DistcaClient does this) waits at least as long as the server
          // asks, doubling for every refusal in a row, jittered
          load.refused.incrementAndGet();
          int tries = refusedInARow + 1;
          long delay = (long) (Math.min(2000, pe.retryAfterMs() << Math.min(tries - 1, 6))
              * (0.5 + java.util.concurrent.ThreadLocalRandom.current().nextDouble()));
          c.channel().eventLoop().schedule(() -> loop(c, q, k, v, end, load, expected, done, tries), delay,
              TimeUnit.MILLISECONDS);
        } else {
          load.otherErrors.incrementAndGet();
          done.completeExceptionally(cause);
        }
        return;
      }
      loop(c, q, k, v, end, load, expected, done, 0);
    });
  }

  /** Direct memory held by Netty's default allocator (adaptive in Netty 4.2), client and server side together. */
  private static long directBytes() {
    return ByteBufAllocator.DEFAULT instanceof ByteBufAllocatorMetricProvider p ? p.metric().usedDirectMemory() : -1;
  }

  private static CompletableFuture<Message> send(PeerConnection c, Tensor q, Tensor k, Tensor v) {
    TensorSet set = new TensorSet();
    set.put("q", q.borrow());
    set.put("k", k.borrow());
    set.put("v", v.borrow());
    AttentionRequest meta = new AttentionRequest("overload", 0, 0, SHAPE.headsQ(), SHAPE.headsKv(), SHAPE.headDim(),
        "bf16", SHAPE.scale(), List.of(new TaskSpec(0, 0, Q, 0, 0, Q, true, 0)), new int[] {Q});
    return c.request(Message.of(MessageType.FORWARD_REQUEST, 0, meta, set));
  }

  /** A few sampled elements: enough to tell a right answer from a wrong one. */
  private static float[] checksum(Tensor o) {
    float[] s = new float[64];
    long step = Math.max(1, o.numel() / s.length);
    for (int i = 0; i < s.length; i++) {
      s[i] = o.getFloat(Math.min(o.numel() - 1, i * step));
    }
    return s;
  }

  private static Tensor random(BufferAllocator root, long seed, int tokens, int heads) {
    SplittableRandom rnd = new SplittableRandom(seed);
    Tensor t = Tensor.allocate(root, DType.BF16, tokens, heads, SHAPE.headDim());
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }
}
