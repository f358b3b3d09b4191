package io.distca.loadtest.jmh;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.tls.TlsOptions;
import io.distca.protocol.transport.MessageServer;
import io.distca.protocol.transport.PeerConnection;
import io.distca.protocol.transport.Transports;
import io.distca.protocol.wire.WireSetup;
import io.netty.channel.EventLoopGroup;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Tensor payload through the real wire path, client to server and back over loopback TCP (encode,
 * send, frame, decode zero-copy, re-encode, send back, decode), against a plain memory copy of the
 * same bytes in the same run. One operation moves {@code 2 * mib} MiB either way: the round trip
 * carries the payload there and back, the copy copies it twice. GB/s = 2 * mib * 2^20 * ops/s.
 *
 * <p>The server side echoes the request's tensors in its response: the echo handler exists only
 * here, so that the measurement contains transport and codec and no attention compute.
 *
 * <p>{@code security=tls}: the same over TLS 1.3 (JDK provider, a self-signed EC certificate), to
 * show what encryption costs on the data path.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"})
public class TransportBenchmark {
  @Param({"4", "64"})
  public int mib;

  /** {@code plain} or {@code tls}. */
  @Param({"plain", "tls"})
  public String security;

  private BufferAllocator root;
  private MessageServer server;
  private EventLoopGroup group;
  private PeerConnection client;
  private ArrowBuf payload;
  private ArrowBuf copyTarget;
  private Tensor payloadView;
  private Path certificates;

  @Setup(Level.Trial)
  public void setUp() throws Exception {
    root = new RootAllocator();
    certificates = Files.createTempDirectory("distca-bench-tls");
    TlsOptions tls = security.equals("tls") ? LoopbackCertificate.create(certificates) : null;
    server = new MessageServer("echo", "127.0.0.1", 0, 1, "", 1L << 30, WireSetup.server(root, 1L << 30, tls),
        (m, responder) -> responder.reply(new Message(MessageType.FORWARD_RESPONSE, m.requestId(), 0,
            new AttentionResponse("bench", 0, "echo", 0, 0, 0, 1), m.tensors())));
    group = Transports.group(1, "bench-client");
    client = PeerConnection.connect(group, "127.0.0.1", server.port(), new Hello(1, "trainer", "bench", ""),
        WireSetup.client(root, tls), Duration.ofSeconds(5)).get(10, TimeUnit.SECONDS);
    long bytes = (long) mib << 20;
    payload = root.buffer(bytes);
    for (long i = 0; i < bytes; i += 8) {
      payload.setLong(i, i * 0x9E3779B97F4A7C15L);
    }
    copyTarget = root.buffer(bytes);
    payloadView = Tensor.view(payload, 0, DType.BF16, (int) (bytes / 2 / 4096), 4096);
  }

  @Benchmark
  public long loopbackRoundTrip() throws Exception {
    TensorSet set = new TensorSet();
    // a view: the encoder releases the set after writing, the payload itself stays ours
    set.put("q", Tensor.view(payload, 0, payloadView.dtype(), payloadView.shape()));
    AttentionRequest meta = new AttentionRequest("bench", 0, 0, 1, 1, 1, "bf16", 1f, List.of(), new int[0]);
    try (Message reply = client.request(Message.of(MessageType.FORWARD_REQUEST, 0, meta, set))
        .get(60, TimeUnit.SECONDS)) {
      return reply.tensors().get("q").byteSize();
    }
  }

  @Benchmark
  public long memoryCopyTwice() {
    long bytes = payload.capacity();
    copyTarget.setBytes(0, payload, 0, bytes);
    payload.setBytes(0, copyTarget, 0, bytes);
    return copyTarget.getLong(bytes - 8);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    client.close();
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    server.close();
    payload.close();
    copyTarget.close();
    root.close();
    try (Stream<Path> files = Files.list(certificates)) {
      files.forEach(f -> f.toFile().delete());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    certificates.toFile().delete();
  }
}
