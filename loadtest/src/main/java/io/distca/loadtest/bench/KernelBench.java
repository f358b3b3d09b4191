package io.distca.loadtest.bench;

import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.workload.DocLengthDistribution;
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
 * varlen mix, and the rebatching comparison (one fused launch over many 128..4K CA-task shards
 * against the same documents unsharded, one long sequence of the same FLOPs, and one launch per
 * shard).
 *
 * <p>Time per batch is the backend's own kernel time where it reports one (the CUDA backend: CUDA
 * events around the launches, copies excluded), else wall time; the median of the iterations.
 */
public final class KernelBench {
  /** One measured configuration. */
  public record Row(String label, int headDim, boolean causal, int seqLen, int slices, double forwardTflops,
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
      rows.addAll(grid(tokens, shape(d), "uniform", seqLens));
    }
    return rows;
  }

  /**
   * The uniform rows for grouped-query heads: {@code headsQ} query heads over {@code headsKv} K/V
   * heads at head dim {@code headDim}, labelled "uniform HQ/HKV" (the rows of {@link #grid} have
   * 2048 / head_dim heads of each).
   */
  public List<Row> gqaGrid(int tokens, int headDim, int headsQ, int headsKv, int[] seqLens) {
    return grid(tokens, new AttentionShape(headsQ, headsKv, headDim, DType.BF16, AttentionShape.defaultScale(headDim)),
        "uniform " + headsQ + "/" + headsKv, seqLens);
  }

  private List<Row> grid(int tokens, AttentionShape shape, String label, int[] seqLens) {
    List<Row> rows = new ArrayList<>();
    for (boolean causal : new boolean[] {true, false}) {
      for (int s : seqLens) {
        if (s > tokens) {
          continue;
        }
        int[] lengths = new int[tokens / s];
        Arrays.fill(lengths, s);
        rows.add(measure(label, shape, causal, lengths, s));
      }
    }
    return rows;
  }

  public Row varlen(String label, int headDim, int[] lengths) {
    return measure(label, headDim, true, lengths, 0);
  }

  /** A causal varlen row of whole documents of {@code lengths} with grouped-query heads. */
  public Row gqaVarlen(String label, int headDim, int headsQ, int headsKv, int[] lengths) {
    return measure(label, new AttentionShape(headsQ, headsKv, headDim, DType.BF16, AttentionShape.defaultScale(headDim)),
        true, lengths, 0);
  }

  /** Shortest and longest shard of the rebatching comparison, in query rows. */
  static final int MIN_SHARD = 128;
  static final int MAX_SHARD = 4096;

  /**
   * Rebatching: documents drawn from {@code documents}, cut into CA-task shards of 128..4K query
   * rows (each with its document's K/V prefix, as the planner ships them) until the shards hold the
   * FLOPs of one causal sequence of {@code longSeq} tokens; the shards fused into one launch, against
   * the same documents unsharded (the same FLOPs), against that one long sequence, and against one
   * launch per shard. Once with every cut on the planner's default grid of 128 tokens
   * ({@code PlanOptions.cutAlignTokens}), once with cuts anywhere.
   */
  public List<Row> rebatching(int headDim, int longSeq, DocLengthDistribution documents, long seed) {
    List<Row> rows = new ArrayList<>();
    for (int grid : new int[] {PlanOptions.DEFAULT_CUT_ALIGN_TOKENS, 1}) {
      Sharded sharded = shardDocuments(documents, (double) longSeq * longSeq / 2, grid, new SplittableRandom(seed));
      String cuts = grid > 1 ? "cuts on " + grid : "cuts anywhere";
      // the batches that the ratios compare run interleaved, so that they see the same GPU clocks
      List<BenchBatch> batches = new ArrayList<>();
      try {
        batches.add(new BenchBatch(allocator, shape(headDim), true, sharded.lengths, sharded.shards, 42));
        batches.add(new BenchBatch(allocator, shape(headDim), true, sharded.lengths,
            BenchBatch.wholeDocuments(sharded.covered()), 42));
        if (grid > 1) {
          batches.add(new BenchBatch(allocator, shape(headDim), true, new int[] {longSeq}, 42));
        }
        double[][] t = time(batches);
        String[] labels = {"fused shards, " + cuts, "  same docs unsharded", "one sequence, same FLOPs"};
        for (int i = 0; i < batches.size(); i++) {
          BenchBatch b = batches.get(i);
          double flops = b.forwardFlopsFaConvention();
          rows.add(new Row(labels[i], headDim, true, i == 2 ? longSeq : 0, b.shards.size(), flops / t[i][0] / 1e9,
              2.5 * flops / t[i][1] / 1e9));
        }
      } finally {
        batches.forEach(BenchBatch::close);
      }
      if (grid > 1) {
        rows.add(perShard(headDim, sharded));
      }
    }
    return rows;
  }

  /** One draw of {@link #rebatchingDraws}: its seed, sample size, and fused/long TFLOP/s ratios. */
  public record RebatchDraw(long seed, int documents, int shards, double forwardRatio, double backwardRatio) {}

  /**
   * The rebatching ratio (fused shards against the long sequence of the same FLOPs, cuts on the
   * planner's grid) over {@code draws} document samples, seeds {@code firstSeed} on, each draw timed
   * interleaved with the same long sequence. One draw holds only a dozen or two documents of a
   * heavy-tailed distribution, so its ratio says as much about the draw as about the kernels (the
   * spread over draws on an H100: docs/benchmarks.md). Draw 0 is {@link #rebatching}'s sample for
   * the same seed.
   */
  public List<RebatchDraw> rebatchingDraws(int headDim, int longSeq, DocLengthDistribution documents, long firstSeed,
      int draws) {
    if (draws < 0) {
      throw new IllegalArgumentException("draws must be at least 0, got " + draws);
    }
    List<RebatchDraw> out = new ArrayList<>(draws);
    if (draws == 0) {
      return out;
    }
    try (BenchBatch longBatch = new BenchBatch(allocator, shape(headDim), true, new int[] {longSeq}, 42)) {
      double longFlops = longBatch.forwardFlopsFaConvention();
      for (int i = 0; i < draws; i++) {
        long seed = firstSeed + i;
        Sharded sharded = shardDocuments(documents, (double) longSeq * longSeq / 2,
            PlanOptions.DEFAULT_CUT_ALIGN_TOKENS, new SplittableRandom(seed));
        try (BenchBatch fused = new BenchBatch(allocator, shape(headDim), true, sharded.lengths, sharded.shards, 42)) {
          double[][] t = time(List.of(fused, longBatch));
          double perFlop = fused.forwardFlopsFaConvention() / longFlops;
          out.add(new RebatchDraw(seed, sharded.lengths.length, sharded.shards.size(), perFlop * t[1][0] / t[0][0],
              perFlop * t[1][1] / t[0][1]));
        }
      }
    }
    return out;
  }

  /** Median, mean, least and greatest of some values (the median of an even count: its middle two averaged). */
  record Spread(double median, double mean, double min, double max) {
    static Spread of(double[] values) {
      if (values.length == 0) {
        throw new IllegalArgumentException("no values");
      }
      double[] v = values.clone();
      Arrays.sort(v);
      int n = v.length;
      double median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      return new Spread(median, Arrays.stream(v).average().orElseThrow(), v[0], v[n - 1]);
    }
  }

  /** One line per draw, then the spread of each pass's ratio over the draws. */
  public static void printRebatchingDraws(List<RebatchDraw> draws, PrintStream out) {
    if (draws.isEmpty()) {
      return;
    }
    out.printf(Locale.ROOT, "rebatching over %d document draws (cuts on the grid, fused/long of the same FLOPs):%n",
        draws.size());
    for (RebatchDraw d : draws) {
      out.printf(Locale.ROOT, "  seed %d: %d shards of %d documents, fwd %.3f, bwd %.3f%n", d.seed(), d.shards(),
          d.documents(), d.forwardRatio(), d.backwardRatio());
    }
    for (boolean fwd : new boolean[] {true, false}) {
      Spread s = Spread.of(draws.stream().mapToDouble(d -> fwd ? d.forwardRatio() : d.backwardRatio()).toArray());
      out.printf(Locale.ROOT, "rebatching %s over the draws: median %.3f, mean %.3f, min %.3f, max %.3f%n",
          fwd ? "fwd" : "bwd", s.median(), s.mean(), s.min(), s.max());
    }
  }

  /** Documents and the shards cut from them (a document's shards cover its rows from 0 on). */
  record Sharded(int[] lengths, List<BenchBatch.Shard> shards) {
    /** Rows of each document that the shards cover: a prefix of it. */
    int[] covered() {
      int[] rows = new int[lengths.length];
      for (BenchBatch.Shard shard : shards) {
        rows[shard.doc()] = Math.max(rows[shard.doc()], shard.qe());
      }
      return rows;
    }
  }

  /**
   * Draws documents of at least {@link #MIN_SHARD} tokens and cuts each into shards of
   * {@link #MIN_SHARD}..{@link #MAX_SHARD} rows of random length, every inner cut on a multiple of
   * {@code grid}, until the shards' causal pairs reach {@code targetPairs}.
   */
  static Sharded shardDocuments(DocLengthDistribution documents, double targetPairs, int grid, SplittableRandom rng) {
    List<Integer> lengths = new ArrayList<>();
    List<BenchBatch.Shard> shards = new ArrayList<>();
    double pairs = 0;
    while (pairs < targetPairs) {
      int n = documents.sample(rng);
      if (n < MIN_SHARD) {
        continue;
      }
      int doc = lengths.size();
      lengths.add(n);
      int qs = 0;
      while (qs < n && pairs < targetPairs) {
        int q = Math.min(n - qs, MIN_SHARD + rng.nextInt(MAX_SHARD - MIN_SHARD + 1));
        if (qs + q < n) {
          q = Math.max(MIN_SHARD, q / grid * grid);
          int rest = n - qs - q;
          if (rest > 0 && rest < MIN_SHARD) {
            // no shard under MIN_SHARD rows: take the rest too, or leave MIN_SHARD more for it
            q = n - qs <= MAX_SHARD ? n - qs : q - MIN_SHARD;
          }
        }
        BenchBatch.Shard shard = new BenchBatch.Shard(doc, qs, qs + q);
        shards.add(shard);
        pairs += shard.causalPairs();
        qs += q;
      }
    }
    return new Sharded(lengths.stream().mapToInt(Integer::intValue).toArray(), shards);
  }

  /** One launch per shard, each shard alone with its own K/V prefix: kernel times summed. */
  private Row perShard(int headDim, Sharded sharded) {
    double fwdMs = 0;
    double bwdMs = 0;
    double flops = 0;
    for (BenchBatch.Shard shard : sharded.shards) {
      int[] one = {shard.qe()};
      try (BenchBatch b = new BenchBatch(allocator, shape(headDim), true, one,
          List.of(new BenchBatch.Shard(0, shard.qs(), shard.qe())), shard.qe())) {
        double[] t = time(b);
        fwdMs += t[0];
        bwdMs += t[1];
        flops += b.forwardFlopsFaConvention();
      }
    }
    return new Row("  one launch per shard", headDim, true, 0, sharded.shards.size(), flops / fwdMs / 1e9,
        2.5 * flops / bwdMs / 1e9);
  }

  private static AttentionShape shape(int headDim) {
    int heads = 2048 / headDim;
    return new AttentionShape(heads, heads, headDim, DType.BF16, AttentionShape.defaultScale(headDim));
  }

  private Row measure(String label, int headDim, boolean causal, int[] lengths, int seqLen) {
    return measure(label, shape(headDim), causal, lengths, seqLen);
  }

  private Row measure(String label, AttentionShape shape, boolean causal, int[] lengths, int seqLen) {
    try (BenchBatch b = new BenchBatch(allocator, shape, causal, lengths, 42)) {
      double[] t = time(b);
      double flops = b.forwardFlopsFaConvention();
      return new Row(label, shape.headDim(), causal, seqLen, b.shards.size(), flops / t[0] / 1e9,
          2.5 * flops / t[1] / 1e9);
    }
  }

  /** Median forward and backward kernel milliseconds of an existing batch (its O, LSE and delta then set). */
  double[] forwardBackwardMillis(BenchBatch b) {
    return time(b);
  }

  /** Median milliseconds of forward and backward. */
  private double[] time(BenchBatch b) {
    return time(List.of(b))[0];
  }

  /**
   * Median milliseconds of forward and backward of each batch, the batches run in turn within every
   * iteration: the GPU's clock drifts by 5-10% within seconds of sustained load, and batches timed
   * one after the other would fold that drift into their ratios.
   */
  private double[][] time(List<BenchBatch> batches) {
    int n = batches.size();
    AttentionBatch[] fwd = new AttentionBatch[n];
    AttentionBatch[] bwd = new AttentionBatch[n];
    for (int j = 0; j < n; j++) {
      fwd[j] = batches.get(j).forward();
    }
    double[][][] samples = new double[n][2][iterations];
    for (int i = -warmup; i < iterations; i++) {
      for (int j = 0; j < n; j++) {
        double tf = once(fwd[j], true);
        if (bwd[j] == null) {
          bwd[j] = batches.get(j).backward(); // its delta from the O this first forward wrote
        }
        double tb = once(bwd[j], false);
        if (i >= 0) {
          samples[j][0][i] = tf;
          samples[j][1][i] = tb;
        }
      }
    }
    double[][] medians = new double[n][2];
    for (int j = 0; j < n; j++) {
      for (int pass = 0; pass < 2; pass++) {
        Arrays.sort(samples[j][pass]);
        medians[j][pass] = samples[j][pass][iterations / 2];
      }
    }
    return medians;
  }

  private double once(AttentionBatch batch, boolean forward) {
    long t0 = System.nanoTime();
    CompletableFuture<?> f = forward ? backend.submitForward(batch) : backend.submitBackward(batch);
    Object result = f.join();
    double wall = (System.nanoTime() - t0) / 1e6;
    Double kernel = kernelMillis.apply(result);
    return kernel != null ? kernel : wall;
  }

  /**
   * The rebatching ratios, from {@link #rebatching}'s rows: fused shards against the long sequence,
   * the same documents unsharded and one launch per shard (cuts on the grid), and fused against the
   * long sequence with cuts anywhere.
   */
  public static void printRebatchingRatios(List<Row> rebatching, PrintStream out) {
    Row fused = rebatching.get(0);
    Row docs = rebatching.get(1);
    Row longSeq = rebatching.get(2);
    Row perShard = rebatching.get(3);
    Row anywhere = rebatching.get(4);
    for (boolean fwd : new boolean[] {true, false}) {
      Function<Row, Double> t = r -> fwd ? r.forwardTflops() : r.backwardTflops();
      out.printf(Locale.ROOT,
          "rebatching %s: fused/long %.2f, fused/unsharded %.2f, fused/per-shard %.2f (cuts on the grid); "
              + "fused/long %.2f with cuts anywhere%n",
          fwd ? "fwd" : "bwd", t.apply(fused) / t.apply(longSeq), t.apply(fused) / t.apply(docs),
          t.apply(fused) / t.apply(perShard), t.apply(anywhere) / t.apply(longSeq));
    }
  }

  public static void print(List<Row> rows, PrintStream out) {
    out.printf(Locale.ROOT, "%-30s %5s %7s %6s %6s %12s %12s%n", "batch", "hdim", "causal", "seqlen", "slices", "fwd TFLOP/s",
        "bwd TFLOP/s");
    for (Row r : rows) {
      out.printf(Locale.ROOT, "%-30s %5d %7s %6s %6d %12.1f %12.1f%n", r.label(), r.headDim(), r.causal(),
          r.seqLen() > 0 ? String.valueOf(r.seqLen()) : "-", r.slices(), r.forwardTflops(), r.backwardTflops());
    }
  }
}
