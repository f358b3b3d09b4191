package io.distca.server.backend.cuda;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * The CUDA backend end to end (plan + gather + upload + kernels + download + scatter) against its
 * kernels alone, on one mixed-length fused batch. A benchmark, not a test: run it on a GPU machine
 * with bin/device-bench.
 *
 * <p>Shape: Llama-3-8B attention (32 query heads, 8 key/value heads, head_dim 128, bf16), causal
 * whole documents. Documents: {@code tokens} query tokens (default 16384) drawn from a long-tailed
 * length distribution (log-uniform 128..8192, the last one cut to fit), the mix a rebatched server
 * sees. Reported: blocking (one batch at a time: the latency path), pipelined (many batches in
 * flight: the throughput path, where uploads, kernels and downloads of different batches overlap) and
 * kernel-only (CUDA events around the launches), as TFLOP/s by the cost model's FLOPs.
 *
 * <p>Arguments: {@code [tokens] [iterations] [seed] [staging threads] [transfer chunk MiB, 0 = none]}.
 */
public final class CudaBackendBenchmark {
  private CudaBackendBenchmark() {}

  public static void main(String[] args) throws Exception {
    int tokens = args.length > 0 ? Integer.parseInt(args[0]) : 16384;
    int iterations = args.length > 1 ? Integer.parseInt(args[1]) : 20;
    long seed = args.length > 2 ? Long.parseLong(args[2]) : 42;
    AttentionShape shape = new AttentionShape(32, 8, 128, DType.BF16, AttentionShape.defaultScale(128));
    int[] lengths = documentLengths(tokens, new Random(seed));
    CudaBackendOptions options = new CudaBackendOptions();
    if (args.length > 3) {
      options.stagingThreads(Integer.parseInt(args[3]));
    }
    if (args.length > 4) {
      options.transferChunkBytes(Long.parseLong(args[4]) << 20);
    }
    String reason = CudaAvailability.unavailableReason(options);
    if (reason != null) {
      System.out.println("no usable GPU: " + reason);
      System.exit(2);
    }
    try (BufferAllocator allocator = new RootAllocator();
        CudaBackend backend = CudaBackend.open(options)) {
      int depth = options.pipelineDepth();
      Inputs inputs = new Inputs(allocator, shape, lengths, new Random(seed));
      List<Outputs> outputs = new ArrayList<>();
      for (int i = 0; i < depth; i++) {
        outputs.add(new Outputs(allocator, shape, lengths, tokens));
      }
      try {
        System.out.printf(Locale.ROOT, "%s; %d documents, %d tokens (lengths %d..%d, mean %.0f); %s causal%n",
            backend.gpu(), lengths.length, tokens, Arrays.stream(lengths).min().orElse(0),
            Arrays.stream(lengths).max().orElse(0), (double) tokens / lengths.length, describe(shape));
        List<String> rows = new ArrayList<>();
        for (boolean backward : new boolean[] {false, true}) {
          List<AttentionBatch> batches = new ArrayList<>();
          for (Outputs out : outputs) {
            batches.add(backward ? inputs.backwardBatch(out) : inputs.forwardBatch(out));
          }
          double flops = batches.get(0).forwardFlops() * (backward ? 2.5 : 1.0);
          String pass = backward ? "backward" : "forward";
          if (backward) {
            // Backward reads O and LSE: give every output set a real forward result first.
            for (Outputs out : outputs) {
              backend.forward(inputs.forwardBatch(out));
            }
          }
          for (int i = 0; i < 3; i++) {
            run(backend, batches.get(0), backward);
          }
          double[] blocking = new double[iterations];
          BatchTimings[] timings = new BatchTimings[iterations];
          for (int i = 0; i < iterations; i++) {
            long start = System.nanoTime();
            timings[i] = run(backend, batches.get(0), backward);
            blocking[i] = (System.nanoTime() - start) / 1e6;
          }
          int pipelined = iterations * 2;
          List<CompletableFuture<BatchTimings>> inFlight = new ArrayList<>();
          long start = System.nanoTime();
          for (int i = 0; i < pipelined; i++) {
            AttentionBatch b = batches.get(i % depth);
            inFlight.add(backward ? backend.submitBackward(b) : backend.submitForward(b));
          }
          for (CompletableFuture<BatchTimings> f : inFlight) {
            CudaBackend.await(f);
          }
          double pipelinedMs = (System.nanoTime() - start) / 1e6 / pipelined;
          double kernelMs = median(Arrays.stream(timings).mapToDouble(BatchTimings::kernelMillis).toArray());
          double uploadMs = median(Arrays.stream(timings).mapToDouble(BatchTimings::uploadMillis).toArray());
          double downloadMs = median(Arrays.stream(timings).mapToDouble(BatchTimings::downloadMillis).toArray());
          double gatherMs = median(Arrays.stream(timings).mapToDouble(t -> t.gatherNanos() / 1e6).toArray());
          double scatterMs = median(Arrays.stream(timings).mapToDouble(t -> t.scatterNanos() / 1e6).toArray());
          double blockingMs = median(blocking);
          rows.add(String.format(Locale.ROOT, "| %s | %.1f | %.1f | %.1f | %.2f / %.2f / %.2f / %.2f / %.2f | %.2f | %.2f | %.0f / %.0f MiB |",
              pass, tflops(flops, kernelMs), tflops(flops, pipelinedMs), tflops(flops, blockingMs),
              gatherMs, uploadMs, kernelMs, downloadMs, scatterMs, pipelinedMs, blockingMs,
              timings[0].inputBytes() / 1048576.0, timings[0].outputBytes() / 1048576.0));
        }
        System.out.println();
        System.out.println("| pass | kernel-only TFLOP/s | pipelined end-to-end TFLOP/s | blocking end-to-end TFLOP/s"
            + " | median ms: gather / upload / kernels / download / scatter | pipelined ms per batch"
            + " | blocking ms per batch | staged in / out |");
        System.out.println("| --- | --- | --- | --- | --- | --- | --- | --- |");
        rows.forEach(System.out::println);
        System.out.println("staging threads " + options.stagingThreads() + ", transfer chunk "
            + (options.transferChunkBytes() == 0 ? "none" : (options.transferChunkBytes() >> 20) + " MiB")
            + ", pipeline depth " + depth
            + ", iterations " + iterations + " blocking and " + (2 * iterations) + " pipelined");
      } finally {
        outputs.forEach(Outputs::close);
        inputs.close();
      }
    }
  }

  private static BatchTimings run(CudaBackend backend, AttentionBatch batch, boolean backward) {
    return CudaBackend.await(backward ? backend.submitBackward(batch) : backend.submitForward(batch));
  }

  private static String describe(AttentionShape s) {
    return s.headsQ() + "/" + s.headsKv() + " heads, head_dim " + s.headDim() + ", " + s.dtype();
  }

  static int[] documentLengths(int tokens, Random random) {
    List<Integer> lengths = new ArrayList<>();
    int left = tokens;
    while (left > 0) {
      int len = (int) Math.round(Math.exp(Math.log(128) + random.nextDouble() * (Math.log(8192) - Math.log(128))));
      len = Math.min(len, left);
      lengths.add(len);
      left -= len;
    }
    return lengths.stream().mapToInt(Integer::intValue).toArray();
  }

  private static double tflops(double flops, double millis) {
    return flops / (millis * 1e-3) / 1e12;
  }

  private static double median(double[] values) {
    double[] sorted = values.clone();
    Arrays.sort(sorted);
    return sorted[sorted.length / 2];
  }

  /** Q, K, V, dO of every document: shared by all output sets (read-only on the host). */
  private static final class Inputs implements AutoCloseable {
    final AttentionShape shape;
    final List<Tensor> q = new ArrayList<>();
    final List<Tensor> k = new ArrayList<>();
    final List<Tensor> v = new ArrayList<>();
    final List<Tensor> dO = new ArrayList<>();

    Inputs(BufferAllocator allocator, AttentionShape shape, int[] lengths, Random random) {
      this.shape = shape;
      for (int len : lengths) {
        q.add(random(allocator, random, len, shape.headsQ(), shape.headDim()));
        k.add(random(allocator, random, len, shape.headsKv(), shape.headDim()));
        v.add(random(allocator, random, len, shape.headsKv(), shape.headDim()));
        dO.add(random(allocator, random, len, shape.headsQ(), shape.headDim()));
      }
    }

    private static Tensor random(BufferAllocator allocator, Random random, int... dims) {
      Tensor t = Tensor.allocate(allocator, DType.BF16, dims);
      long address = t.address();
      for (long i = 0; i < t.numel(); i++) {
        MemoryUtil.putShort(address + 2 * i, HalfFloats.floatToBf16((float) random.nextGaussian()));
      }
      return t;
    }

    AttentionBatch forwardBatch(Outputs out) {
      List<KvSegment> segments = new ArrayList<>();
      List<QuerySlice> slices = new ArrayList<>();
      for (int d = 0; d < q.size(); d++) {
        int len = q.get(d).dim(0);
        segments.add(KvSegment.forward(k.get(d), v.get(d)));
        slices.add(QuerySlice.forward(d, 0, len, true, 0, q.get(d), out.o.get(d), new LseView(out.lse, out.column[d])));
      }
      return new AttentionBatch(shape, segments, slices);
    }

    AttentionBatch backwardBatch(Outputs out) {
      List<KvSegment> segments = new ArrayList<>();
      List<QuerySlice> slices = new ArrayList<>();
      for (int d = 0; d < q.size(); d++) {
        int len = q.get(d).dim(0);
        segments.add(new KvSegment(k.get(d), v.get(d), out.dk.get(d), out.dv.get(d)));
        AttentionDelta.computeInto(out.o.get(d), dO.get(d), out.delta, out.column[d]);
        slices.add(QuerySlice.backward(d, 0, len, true, 0, q.get(d), new LseView(out.lse, out.column[d]),
            new LseView(out.delta, out.column[d]), dO.get(d), out.dq.get(d)));
      }
      return new AttentionBatch(shape, segments, slices);
    }

    @Override
    public void close() {
      for (List<Tensor> list : List.of(q, k, v, dO)) {
        list.forEach(Tensor::close);
      }
    }
  }

  /** One batch's outputs (O, LSE, dQ, dK, dV), so that batches in flight never share an output. */
  private static final class Outputs implements AutoCloseable {
    final List<Tensor> o = new ArrayList<>();
    final List<Tensor> dq = new ArrayList<>();
    final List<Tensor> dk = new ArrayList<>();
    final List<Tensor> dv = new ArrayList<>();
    final Tensor lse;
    final Tensor delta;
    final int[] column;

    Outputs(BufferAllocator allocator, AttentionShape shape, int[] lengths, int tokens) {
      column = new int[lengths.length];
      int at = 0;
      for (int d = 0; d < lengths.length; d++) {
        o.add(Tensor.allocate(allocator, DType.BF16, lengths[d], shape.headsQ(), shape.headDim()));
        dq.add(Tensor.allocate(allocator, DType.BF16, lengths[d], shape.headsQ(), shape.headDim()));
        dk.add(Tensor.allocate(allocator, DType.BF16, lengths[d], shape.headsKv(), shape.headDim()));
        dv.add(Tensor.allocate(allocator, DType.BF16, lengths[d], shape.headsKv(), shape.headDim()));
        column[d] = at;
        at += lengths[d];
      }
      lse = Tensor.allocate(allocator, DType.FP32, shape.headsQ(), tokens);
      delta = Tensor.allocate(allocator, DType.FP32, shape.headsQ(), tokens);
    }

    @Override
    public void close() {
      for (List<Tensor> list : List.of(o, dq, dk, dv)) {
        list.forEach(Tensor::close);
      }
      lse.close();
      delta.close();
    }
  }
}
