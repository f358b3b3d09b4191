package io.distca.loadtest.jmh;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.wire.ProtocolCodec;
import io.distca.protocol.wire.WireOptions;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.List;
import java.util.concurrent.TimeUnit;
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
 * The wire codec without a socket: a FORWARD_REQUEST carrying three tensors (q, k, v; {@code mib}
 * MiB in all) through the real pipeline ({@link ProtocolCodec} on {@link EmbeddedChannel}s),
 * against a plain copy of the same bytes in the same run. {@code encode}: the message encoder
 * (zero-copy: header and metadata are written, the tensors are wrapped). {@code decode}: the frame's
 * bytes fed to the frame and message decoders in 64 KiB direct buffers, as socket reads deliver
 * them; the frame decoder assembles the frame into one buffer (one copy) and the message decoder
 * wraps tensor views over it. GB/s = mib * 2^20 * ops/s.
 *
 * <p>(Feeding the encoder's composite buffer straight into the decoder would measure something no
 * socket does: Netty merges a composite input through a temporary heap buffer.)
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"})
public class FrameCodecBenchmark {
  /** What one socket read typically hands the pipeline. */
  private static final int READ_BYTES = 64 << 10;

  @Param({"1", "16"})
  public int mib;

  private BufferAllocator root;
  private EmbeddedChannel sender;
  private EmbeddedChannel receiver;
  private ArrowBuf payload;
  private ArrowBuf copyTarget;
  private int qRows;
  private int kvRows;
  private AttentionRequest meta;
  private ByteBuf wire;

  @Setup(Level.Trial)
  public void setUp() {
    root = new RootAllocator();
    WireOptions options = new WireOptions().allocator(root).maxFrameBytes(256L << 20);
    sender = new EmbeddedChannel();
    ProtocolCodec.install(sender.pipeline(), options);
    receiver = new EmbeddedChannel();
    ProtocolCodec.install(receiver.pipeline(), options);
    long bytes = (long) mib << 20;
    payload = root.buffer(bytes);
    for (long i = 0; i < bytes; i += 8) {
      payload.setLong(i, i * 0x9E3779B97F4A7C15L);
    }
    copyTarget = root.buffer(bytes);
    // Llama-like GQA proportions: q [t, 8, 128], k and v [t, 2, 128] in bf16, 12 KiB per row set
    int rowBytes = (8 + 2 + 2) * 128 * 2;
    qRows = (int) (bytes / rowBytes);
    kvRows = qRows;
    meta = new AttentionRequest("bench", 0, 0, 8, 2, 128, "bf16", 0.088f, List.of(), new int[0]);
    sender.writeOutbound(request());
    ByteBuf frame = sender.readOutbound();
    wire = Unpooled.directBuffer(frame.readableBytes());
    wire.writeBytes(frame);
    frame.release();
  }

  private Message request() {
    TensorSet set = new TensorSet();
    // views: the encoder releases the set once written, the payload itself stays ours
    long q = (long) qRows * 8 * 128 * 2;
    long kv = (long) kvRows * 2 * 128 * 2;
    set.put("q", Tensor.view(payload, 0, DType.BF16, qRows, 8, 128));
    set.put("k", Tensor.view(payload, q, DType.BF16, kvRows, 2, 128));
    set.put("v", Tensor.view(payload, q + kv, DType.BF16, kvRows, 2, 128));
    return Message.of(MessageType.FORWARD_REQUEST, 1, meta, set);
  }

  @Benchmark
  public long encode() {
    sender.writeOutbound(request());
    ByteBuf frame = sender.readOutbound();
    int length = frame.readableBytes();
    frame.release();
    return length;
  }

  @Benchmark
  public long decode() {
    int length = wire.readableBytes();
    for (int at = 0; at < length; at += READ_BYTES) {
      receiver.writeInbound(wire.retainedSlice(at, Math.min(READ_BYTES, length - at)));
    }
    try (Message m = receiver.readInbound()) {
      return m.tensors().byteSize();
    }
  }

  @Benchmark
  public long memoryCopy() {
    long bytes = payload.capacity();
    copyTarget.setBytes(0, payload, 0, bytes);
    return copyTarget.getLong(bytes - 8);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    sender.finishAndReleaseAll();
    receiver.finishAndReleaseAll();
    wire.release();
    payload.close();
    copyTarget.close();
    root.close();
  }
}
