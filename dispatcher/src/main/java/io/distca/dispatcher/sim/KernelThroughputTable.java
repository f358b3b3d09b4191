package io.distca.dispatcher.sim;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Achieved attention-kernel throughput over (query rows, key rows) of one task, the shape of the
 * calibration table a server measures at start. Lookups interpolate bilinearly in log2 of both
 * lengths and clamp at the table's edges.
 */
public final class KernelThroughputTable {
  private final int[] qLens;
  private final int[] kvLens;
  private final double[][] tflops;

  public KernelThroughputTable(int[] qLens, int[] kvLens, double[][] tflops) {
    requireIncreasing("qLens", qLens);
    requireIncreasing("kvLens", kvLens);
    if (tflops.length != qLens.length) {
      throw new IllegalArgumentException("kernel table: " + tflops.length + " rows of TFLOP/s for " + qLens.length + " qLens");
    }
    for (int i = 0; i < tflops.length; i++) {
      if (tflops[i].length != kvLens.length) {
        throw new IllegalArgumentException("kernel table: row " + i + " has " + tflops[i].length + " entries, expected " + kvLens.length);
      }
      for (double value : tflops[i]) {
        if (!(value > 0) || Double.isInfinite(value)) {
          throw new IllegalArgumentException("kernel table: TFLOP/s must be positive and finite, got " + value + " in row " + i);
        }
      }
    }
    this.qLens = qLens.clone();
    this.kvLens = kvLens.clone();
    this.tflops = new double[tflops.length][];
    for (int i = 0; i < tflops.length; i++) {
      this.tflops[i] = tflops[i].clone();
    }
  }

  /**
   * An assumed table for a FlashAttention-2-class BF16 kernel on one H100 (about 330 TFLOP/s on
   * long shards, much less when a shard has few query rows or few keys). These are representative
   * figures, not measurements of this project's kernels; pass a measured table to replace them.
   */
  public static KernelThroughputTable assumedH100() {
    return new KernelThroughputTable(
        new int[] {128, 512, 2048, 8192, 32768},
        new int[] {128, 1024, 8192, 65536},
        new double[][] {
          {60, 150, 210, 230},
          {110, 220, 270, 285},
          {150, 250, 305, 320},
          {160, 260, 320, 330},
          {160, 265, 325, 335},
        });
  }

  /** {@code {"qLens": [...], "kvLens": [...], "tflops": [[...], ...]}} with one row per qLen. */
  public static KernelThroughputTable fromJson(Path file) {
    try {
      JsonNode root = new ObjectMapper().readTree(file.toFile());
      ObjectMapper mapper = new ObjectMapper();
      if (root == null || !root.has("qLens") || !root.has("kvLens") || !root.has("tflops")) {
        throw new IllegalArgumentException("kernel table " + file + ": needs fields qLens, kvLens and tflops");
      }
      return new KernelThroughputTable(
          mapper.treeToValue(root.get("qLens"), int[].class),
          mapper.treeToValue(root.get("kvLens"), int[].class),
          mapper.treeToValue(root.get("tflops"), double[][].class));
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read kernel table " + file + ": " + e.getMessage(), e);
    }
  }

  /** Achieved FLOP/s for a task of {@code q} query rows over {@code kv} keys. */
  public double flopsPerSecond(long q, long kv) {
    double x = Math.log(Math.max(1, q)) / Math.log(2);
    double y = Math.log(Math.max(1, kv)) / Math.log(2);
    int i = lowerIndex(qLens, x);
    int j = lowerIndex(kvLens, y);
    double fx = fraction(qLens, i, x);
    double fy = fraction(kvLens, j, y);
    int i1 = Math.min(i + 1, qLens.length - 1);
    int j1 = Math.min(j + 1, kvLens.length - 1);
    double top = tflops[i][j] * (1 - fy) + tflops[i][j1] * fy;
    double bottom = tflops[i1][j] * (1 - fy) + tflops[i1][j1] * fy;
    return 1e12 * (top * (1 - fx) + bottom * fx);
  }

  /** The largest value in the table, as FLOP/s: what a server advertises as its throughput. */
  public double peakFlopsPerSecond() {
    double peak = 0;
    for (double[] row : tflops) {
      for (double value : row) {
        peak = Math.max(peak, value);
      }
    }
    return 1e12 * peak;
  }

  private static int lowerIndex(int[] lens, double log2) {
    int i = 0;
    while (i + 1 < lens.length && Math.log(lens[i + 1]) / Math.log(2) <= log2) {
      i++;
    }
    return i;
  }

  private static double fraction(int[] lens, int i, double log2) {
    if (i + 1 >= lens.length) {
      return 0;
    }
    double lo = Math.log(lens[i]) / Math.log(2);
    double hi = Math.log(lens[i + 1]) / Math.log(2);
    return Math.max(0, Math.min(1, (log2 - lo) / (hi - lo)));
  }

  private static void requireIncreasing(String name, int[] values) {
    if (values == null || values.length == 0) {
      throw new IllegalArgumentException("kernel table: " + name + " must not be empty");
    }
    for (int i = 0; i < values.length; i++) {
      if (values[i] < 1 || (i > 0 && values[i] <= values[i - 1])) {
        throw new IllegalArgumentException("kernel table: " + name + " must be positive and increasing: " + Arrays.toString(values));
      }
    }
  }
}
