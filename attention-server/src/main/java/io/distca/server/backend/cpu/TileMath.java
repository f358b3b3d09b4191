package io.distca.server.backend.cpu;

/**
 * The inner loops of the CPU kernels, written so that C2's superword pass vectorizes them: plain
 * counted loops over float[] with loop-invariant offsets and no reductions across lanes. Products
 * of tiles are computed as sums of scaled rows ({@code y += a * x}) rather than dot products,
 * because C2 does not reorder float additions and so cannot vectorize a dot product.
 */
final class TileMath {
  private TileMath() {}

  /**
   * {@code out[r * outStride + c] = sum_e a[r * depth + e] * bT[bAt + e * bStride + c]} for rows
   * [r0, r1) and columns [0, cols): A times B where B is stored transposed (column-major).
   */
  static void multiplyByTransposed(float[] a, int depth, int r0, int r1,
      float[] bT, int bAt, int bStride, int cols, float[] out, int outStride) {
    for (int r = r0; r < r1; r++) {
      int outRow = r * outStride;
      int aRow = r * depth;
      java.util.Arrays.fill(out, outRow, outRow + cols, 0f);
      for (int e = 0; e < depth; e++) {
        axpy(a[aRow + e], bT, bAt + e * bStride, out, outRow, cols);
      }
    }
  }

  /** {@code y[yAt + i] += alpha * x[xAt + i]} for i in [0, n). */
  static void axpy(float alpha, float[] x, int xAt, float[] y, int yAt, int n) {
    for (int i = 0; i < n; i++) {
      y[yAt + i] += alpha * x[xAt + i];
    }
  }

  static void scale(float[] y, int at, int n, float factor) {
    for (int i = 0; i < n; i++) {
      y[at + i] *= factor;
    }
  }

  static float dot(float[] a, int aAt, float[] b, int bAt, int n) {
    float sum = 0f;
    for (int i = 0; i < n; i++) {
      sum += a[aAt + i] * b[bAt + i];
    }
    return sum;
  }

  static float max(float[] x, int at, int n, float start) {
    float m = start;
    for (int i = 0; i < n; i++) {
      m = Math.max(m, x[at + i]);
    }
    return m;
  }

  static float exp(float x) {
    return (float) Math.exp(x);
  }
}
