package io.distca.loadtest.bench;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;
import org.apache.arrow.memory.BufferAllocator;

/**
 * {@code distca bench kernel}: TFLOP/s of a backend's fused varlen kernels, by FlashAttention's
 * convention (forward 4*b*s^2*h*d, halved when causal; backward 2.5x forward), over the standard
 * grid (head_dim 64 and 128, causal and not, s = 512 ... 16K with b*s tokens and h*d = 2048), a
 * varlen mix, and the rebatching comparison (one fused launch over many 128..4K shards against one
 * long sequence of the same FLOPs and against one launch per shard).
 *
 * <p>Time per batch is the backend's own kernel time where it reports one (the CUDA backend: CUDA
 * events around the launches, copies excluded), else wall time; the median of the iterations.
 */
public final class KernelBench {
  /** One measured configuration. */
  public record Row(String label, int headDim, boolean causal, int seqLen, int docs, double forwardTflops,
      double backwardTflops) {}

  private final AttentionBackend backend;
  private final BufferAllocator allocator;
  private final int warmup;
  private final int iterations;
  private final Function<Object, Double> kernelMillis;

  /**
   * @param kernelMillis extracts the kernel-only milliseconds from what the backend's submit future
   *     yields, or returns null when it reports none (then wall time is used)
   */
  public KernelBench(AttentionBackend backend, BufferAllocator allocator, int warmup, int iterations,
      Function<Object, Double> kernelMillis) {
    this.backend = backend;
    this.allocator = allocator;
    this.warmup = warmup;
    this.iterations = iterations;
    this.kernelMillis = kernelMillis;
  }

  public List<Row> grid(int tokens, int[] headDims, int[] seqLens) {
    List<Row> rows = new ArrayList<>();
    for (int d : headDims) {
      for (boolean causal : new boolean[] {true, false}) {
        for (int s : seqLens) {
          if (s > tokens) {
            continue;
          }
          int[] lengths = new int[tokens / s];
          Arrays.fill(lengths, s);
          rows.add(measure("uniform", d, causal, lengths, s));
        }
      }
    }
    return rows;
  }

  public Row varlen(String label, int headDim, int[] lengths) {
    return measure(label, headDim, true, lengths, 0);
  }

  /**
   * Rebatching: shards of 128..4K tokens fused into one launch, against one long causal sequence of
   * the same FLOPs, and against one launch per shard (summed kernel times).
   */
  public List<Row> rebatching(int headDim, int totalTokens, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    List<Integer> shards = new ArrayList<>();
    int left = totalTokens;
    while (left > 0) {
      int len = (int) Math.min(left, Math.round(Math.exp(Math.log(128) + rnd.nextDouble() * (Math.log(4096) - Math.log(128)))));
      shards.add(len);
      left -= len;
    }
    int[] lengths = shards.stream().mapToInt(Integer::intValue).toArray();
    double pairs = 0;
    for (int len : lengths) {
      pairs += (double) len * len / 2;
    }
    int longSeq = (int) Math.round(Math.sqrt(2 * pairs));
    List<Row> rows = new ArrayList<>();
    rows.add(measure("fused " + lengths.length + " shards 128..4K", headDim, true, lengths, 0));
    rows.add(measure("one sequence, same FLOPs", headDim, true, new int[] {longSeq}, longSeq));
    // one launch per shard: time each shard alone, add the times
    double fwdMs = 0;
    double bwdMs = 0;
    double flops = 0;
    for (int len : lengths) {
      try (BenchBatch b = new BenchBatch(allocator, shape(headDim), true, new int[] {len}, len)) {
        double[] t = time(b);
        fwdMs += t[0];
        bwdMs += t[1];
        flops += b.forwardFlopsFaConvention();
      }
    }
    rows.add(new Row("one launch per shard", headDim, true, 0, lengths.length, flops / fwdMs / 1e9,
        2.5 * flops / bwdMs / 1e9));
    return rows;
  }

  private static AttentionShape shape(int headDim) {
    int heads = 2048 / headDim;
    return new AttentionShape(heads, heads, headDim, DType.BF16, AttentionShape.defaultScale(headDim));
  }

  private Row measure(String label, int headDim, boolean causal, int[] lengths, int seqLen) {
    try (BenchBatch b = new BenchBatch(allocator, shape(headDim), causal, lengths, 42)) {
      double[] t = time(b);
      double flops = b.forwardFlopsFaConvention();
      return new Row(label, headDim, causal, seqLen, lengths.length, flops / t[0] / 1e9, 2.5 * flops / t[1] / 1e9);
    }
  }

  /** Median forward kernel milliseconds of an existing batch. */
  double varlenMillis(BenchBatch b) {
    return time(b)[0];
  }

  /** Median milliseconds of forward and backward. */
  private double[] time(BenchBatch b) {
    AttentionBatch fwd = b.forward();
    AttentionBatch bwd = b.backward();
    double[] f = new double[iterations];
    double[] g = new double[iterations];
    for (int i = -warmup; i < iterations; i++) {
      double tf = once(fwd, true);
      double tb = once(bwd, false);
      if (i >= 0) {
        f[i] = tf;
        g[i] = tb;
      }
    }
    Arrays.sort(f);
    Arrays.sort(g);
    return new double[] {f[iterations / 2], g[iterations / 2]};
  }

  private double once(AttentionBatch batch, boolean forward) {
    long t0 = System.nanoTime();
    CompletableFuture<?> f = forward ? backend.submitForward(batch) : backend.submitBackward(batch);
    Object result = f.join();
    double wall = (System.nanoTime() - t0) / 1e6;
    Double kernel = kernelMillis.apply(result);
    return kernel != null ? kernel : wall;
  }

  public static void print(List<Row> rows, PrintStream out) {
    out.printf(Locale.ROOT, "%-28s %5s %7s %6s %5s %12s %12s%n", "batch", "hdim", "causal", "seqlen", "docs", "fwd TFLOP/s",
        "bwd TFLOP/s");
    for (Row r : rows) {
      out.printf(Locale.ROOT, "%-28s %5d %7s %6s %5d %12.1f %12.1f%n", r.label(), r.headDim(), r.causal(),
          r.seqLen() > 0 ? String.valueOf(r.seqLen()) : "-", r.docs(), r.forwardTflops(), r.backwardTflops());
    }
  }
}
