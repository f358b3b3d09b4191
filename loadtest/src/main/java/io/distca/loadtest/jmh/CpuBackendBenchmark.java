package io.distca.loadtest.jmh;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.OwnedTensors;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import io.distca.server.backend.ReferenceAttention;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.openjdk.jmh.annotations.AuxCounters;
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
 * The CPU attention backend against the float64 reference, same inputs, same run: one causal
 * document of {@code tokens} tokens, Llama-like heads (Hq 8, Hkv 2, head_dim 128, bf16). The
 * secondary result {@code gflop} is GFLOP/s under the cost model's convention (forward
 * {@code 4 * D * Hq * pairs}, backward 2.5x that), so the two backends and both passes compare
 * directly. Backward reuses the backend's own forward O and LSE.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"})
public class CpuBackendBenchmark {
  private static final int HEADS_Q = 8;
  private static final int HEADS_KV = 2;
  private static final int HEAD_DIM = 128;

  @Param({"512", "2048"})
  public int tokens;

  /** "cpu" (CpuBackend, default options: one thread per core) or "reference" (ReferenceAttention). */
  @Param({"cpu", "reference"})
  public String backend;

  private BufferAllocator allocator;
  private OwnedTensors tensors;
  private AttentionBackend attention;
  private AttentionBatch forwardBatch;
  private AttentionBatch backwardBatch;
  private double forwardGflop;

  /** Reported as a rate: GFLOP per second. */
  @State(Scope.Thread)
  @AuxCounters(AuxCounters.Type.OPERATIONS)
  public static class Flops {
    public double gflop;

    @Setup(Level.Iteration)
    public void reset() {
      gflop = 0;
    }
  }

  @Setup(Level.Trial)
  public void setUp() {
    allocator = new RootAllocator();
    tensors = new OwnedTensors(allocator);
    AttentionShape shape = new AttentionShape(HEADS_Q, HEADS_KV, HEAD_DIM, DType.BF16,
        AttentionShape.defaultScale(HEAD_DIM));
    Random random = new Random(42);
    Tensor q = gaussian(random, tokens, HEADS_Q);
    Tensor k = gaussian(random, tokens, HEADS_KV);
    Tensor v = gaussian(random, tokens, HEADS_KV);
    Tensor dO = gaussian(random, tokens, HEADS_Q);
    Tensor o = tensors.allocate(DType.BF16, tokens, HEADS_Q, HEAD_DIM);
    Tensor dq = tensors.allocate(DType.BF16, tokens, HEADS_Q, HEAD_DIM);
    Tensor dk = tensors.allocate(DType.BF16, tokens, HEADS_KV, HEAD_DIM);
    Tensor dv = tensors.allocate(DType.BF16, tokens, HEADS_KV, HEAD_DIM);
    LseView lse = new LseView(tensors.allocate(DType.FP32, HEADS_Q, tokens), 0);
    forwardBatch = new AttentionBatch(shape, List.of(KvSegment.forward(k, v)),
        List.of(QuerySlice.forward(0, 0, tokens, true, 0, q, o, lse)));
    Tensor delta = tensors.allocate(DType.FP32, HEADS_Q, tokens);
    backwardBatch = new AttentionBatch(shape, List.of(new KvSegment(k, v, dk, dv)),
        List.of(QuerySlice.backward(0, 0, tokens, true, 0, q, lse, new LseView(delta, 0), dO, dq)));
    forwardGflop = forwardBatch.forwardFlops() / 1e9;
    attention = "reference".equals(backend) ? new ReferenceAttention() : new CpuBackend(new CpuBackendOptions());
    attention.forward(forwardBatch);
    AttentionDelta.computeInto(o, dO, delta, 0); // from the O that forward wrote, as a trainer client does
  }

  @Benchmark
  public void forward(Flops flops) {
    attention.forward(forwardBatch);
    flops.gflop += forwardGflop;
  }

  @Benchmark
  public void backward(Flops flops) {
    attention.backward(backwardBatch);
    flops.gflop += 2.5 * forwardGflop;
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    attention.close();
    tensors.close();
    allocator.close();
  }

  private Tensor gaussian(Random random, int rows, int heads) {
    Tensor t = tensors.allocate(DType.BF16, rows, heads, HEAD_DIM);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) random.nextGaussian());
    }
    return t;
  }
}
