package io.distca.loadtest.jmh;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.OwnedTensors;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.server.RebatcherProbe;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
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
 * The server's request path without the network ({@link RebatcherProbe}: validate every request,
 * queue it, fuse queued requests into backend calls, run, release) against the same CPU backend
 * called directly, same inputs, same run: {@code requests} requests of one causal {@code tokens}-token
 * document each (heads 4/2, head_dim 64, bf16). {@code rebatched} is what the server does;
 * {@code unfused} is the probe with at most one request per backend call (rebatching off);
 * {@code backendPerRequest} and {@code backendFused} call the backend with no server machinery, one
 * call per request or one call for all. One operation = all requests answered.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"})
public class RebatcherBenchmark {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 64, DType.BF16, AttentionShape.defaultScale(64));

  @Param({"32"})
  public int requests;

  @Param({"128"})
  public int tokens;

  private BufferAllocator root;
  private CpuBackend backend;
  private RebatcherProbe probe;
  private RebatcherProbe unfusedProbe;
  private OwnedTensors tensors;
  private final List<Tensor[]> inputs = new ArrayList<>();
  private final List<AttentionBatch> perRequest = new ArrayList<>();
  private AttentionBatch fused;

  /** Fresh request messages for one operation (the server consumes what it is sent). */
  @State(Scope.Thread)
  public static class Messages {
    List<Message> messages;

    @Setup(Level.Invocation)
    public void build(RebatcherBenchmark b) {
      messages = new ArrayList<>(b.requests);
      for (Tensor[] qkv : b.inputs) {
        TensorSet set = new TensorSet();
        for (int i = 0; i < 3; i++) {
          Tensor t = set.putNew(new String[] {"q", "k", "v"}[i], b.root, DType.BF16, qkv[i].shape());
          t.copyFrom(qkv[i]);
        }
        AttentionRequest meta = new AttentionRequest("bench", 0, 0, SHAPE.headsQ(), SHAPE.headsKv(), SHAPE.headDim(),
            "bf16", SHAPE.scale(), List.of(new TaskSpec(0, 0, b.tokens, 0, 0, b.tokens, true, 0)), new int[] {b.tokens});
        messages.add(Message.of(MessageType.FORWARD_REQUEST, 0, meta, set));
      }
    }
  }

  @Setup(Level.Trial)
  public void setUp() {
    root = new RootAllocator();
    tensors = new OwnedTensors(root);
    backend = new CpuBackend(new CpuBackendOptions());
    probe = new RebatcherProbe(backend, 200, 64, root);
    unfusedProbe = new RebatcherProbe(backend, 0, 1, root);
    SplittableRandom rnd = new SplittableRandom(42);
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    for (int r = 0; r < requests; r++) {
      Tensor q = random(rnd, SHAPE.headsQ());
      Tensor k = random(rnd, SHAPE.headsKv());
      Tensor v = random(rnd, SHAPE.headsKv());
      inputs.add(new Tensor[] {q, k, v});
      Tensor o = tensors.allocate(DType.BF16, tokens, SHAPE.headsQ(), SHAPE.headDim());
      LseView lse = new LseView(tensors.allocate(DType.FP32, SHAPE.headsQ(), tokens), 0);
      KvSegment segment = KvSegment.forward(k, v);
      perRequest.add(new AttentionBatch(SHAPE, List.of(segment),
          List.of(QuerySlice.forward(0, 0, tokens, true, 0, q, o, lse))));
      segments.add(segment);
      slices.add(QuerySlice.forward(r, 0, tokens, true, 0, q, o, lse));
    }
    fused = new AttentionBatch(SHAPE, segments, slices);
  }

  @Benchmark
  public void rebatched(Messages m) {
    probe.submit(m.messages).join();
  }

  @Benchmark
  public void unfused(Messages m) {
    unfusedProbe.submit(m.messages).join();
  }

  @Benchmark
  public void backendPerRequest() {
    for (AttentionBatch b : perRequest) {
      backend.forward(b);
    }
  }

  @Benchmark
  public void backendFused() {
    backend.forward(fused);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    probe.close();
    unfusedProbe.close();
    backend.close();
    tensors.close();
    root.close();
  }

  private Tensor random(SplittableRandom rnd, int heads) {
    Tensor t = tensors.allocate(DType.BF16, tokens, heads, SHAPE.headDim());
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }
}
