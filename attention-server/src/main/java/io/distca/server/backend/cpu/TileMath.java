package io.distca.server.backend.cpu;

import java.util.Arrays;

/**
 * The inner loops of the CPU kernels, shaped for C2's superword vectorizer on JDK 17:
 *
 * <ul>
 *   <li>Tiles are arrays of rows ({@code float[][]}) and every vector loop indexes all its arrays
 *       with the bare loop counter. C2 17 does not vectorize {@code y[yAt + i] += a * x[xAt + i]}
 *       with two different invariant offsets (measured: no faster than scalar), but does vectorize
 *       {@code y[i] += a * x[i]}.
 *   <li>Products are sums of scaled rows, never dot products: C2 keeps float additions in order, so
 *       a dot product cannot be vectorized.
 *   <li>Four rows (or four coefficients) per pass over a vector loop, so each loaded vector feeds
 *       four multiply-adds instead of one (about 2-3x on the dev VM).
 * </ul>
 */
final class TileMath {
  private TileMath() {}

  /**
   * {@code out[r][c] = sum_e a[r][e] * bT[bRow + e][c]} for rows [r0, r1) and columns [0, cols):
   * A times B with B stored transposed, i.e. dot products of A's rows with B's rows.
   */
  static void multiplyByTransposed(float[][] a, int r0, int r1, float[][] bT, int bRow, int depth, int cols,
      float[][] out) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
      float[] o0 = out[r];
      float[] o1 = out[r + 1];
      float[] o2 = out[r + 2];
      float[] o3 = out[r + 3];
      float[] a0 = a[r];
      float[] a1 = a[r + 1];
      float[] a2 = a[r + 2];
      float[] a3 = a[r + 3];
      Arrays.fill(o0, 0, cols, 0f);
      Arrays.fill(o1, 0, cols, 0f);
      Arrays.fill(o2, 0, cols, 0f);
      Arrays.fill(o3, 0, cols, 0f);
      for (int e = 0; e < depth; e++) {
        float x0 = a0[e];
        float x1 = a1[e];
        float x2 = a2[e];
        float x3 = a3[e];
        float[] b = bT[bRow + e];
        for (int c = 0; c < cols; c++) {
          float bc = b[c];
          o0[c] += x0 * bc;
          o1[c] += x1 * bc;
          o2[c] += x2 * bc;
          o3[c] += x3 * bc;
        }
      }
    }
    for (; r < r1; r++) {
      float[] o0 = out[r];
      float[] a0 = a[r];
      Arrays.fill(o0, 0, cols, 0f);
      for (int e = 0; e < depth; e++) {
        axpy(a0[e], bT[bRow + e], o0, cols);
      }
    }
  }

  /** {@code y[e] += sum_{c in [c0, c1)} coefficient[c] * x[xRow + c][e]} for e in [0, n). */
  static void addWeightedRows(float[] y, float[] coefficient, int c0, int c1, float[][] x, int xRow, int n) {
    int c = c0;
    for (; c + 4 <= c1; c += 4) {
      float w0 = coefficient[c];
      float w1 = coefficient[c + 1];
      float w2 = coefficient[c + 2];
      float w3 = coefficient[c + 3];
      float[] x0 = x[xRow + c];
      float[] x1 = x[xRow + c + 1];
      float[] x2 = x[xRow + c + 2];
      float[] x3 = x[xRow + c + 3];
      for (int e = 0; e < n; e++) {
        y[e] += w0 * x0[e] + w1 * x1[e] + w2 * x2[e] + w3 * x3[e];
      }
    }
    for (; c < c1; c++) {
      axpy(coefficient[c], x[xRow + c], y, n);
    }
  }

  /**
   * {@code y[e] += sum_{r in [r0, r1)} coefficients[r][column] * x[r][e]}: like
   * {@link #addWeightedRows} with the weights read down one column of a tile.
   */
  static void addWeightedRowsByColumn(float[] y, float[][] coefficients, int column, int r0, int r1,
      float[][] x, int n) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
      float w0 = coefficients[r][column];
      float w1 = coefficients[r + 1][column];
      float w2 = coefficients[r + 2][column];
      float w3 = coefficients[r + 3][column];
      float[] x0 = x[r];
      float[] x1 = x[r + 1];
      float[] x2 = x[r + 2];
      float[] x3 = x[r + 3];
      for (int e = 0; e < n; e++) {
        y[e] += w0 * x0[e] + w1 * x1[e] + w2 * x2[e] + w3 * x3[e];
      }
    }
    for (; r < r1; r++) {
      axpy(coefficients[r][column], x[r], y, n);
    }
  }

  /** {@code y[i] += alpha * x[i]} for i in [0, n). */
  static void axpy(float alpha, float[] x, float[] y, int n) {
    for (int i = 0; i < n; i++) {
      y[i] += alpha * x[i];
    }
  }

  static void scale(float[] y, int n, float factor) {
    for (int i = 0; i < n; i++) {
      y[i] *= factor;
    }
  }

  static float max(float[] x, int from, int to, float start) {
    float m = start;
    for (int i = from; i < to; i++) {
      m = Math.max(m, x[i]);
    }
    return m;
  }

  static float exp(float x) {
    return (float) Math.exp(x);
  }
}
