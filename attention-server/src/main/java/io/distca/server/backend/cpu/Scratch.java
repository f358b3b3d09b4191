package io.distca.server.backend.cpu;

/**
 * One worker thread's fp32 tiles, grown on demand and reused across units and calls so that the hot
 * path allocates nothing. Sizes depend only on the options and head_dim: O(block), never O(len).
 * Tiles are arrays of rows (see {@link TileMath} for why).
 */
final class Scratch {
  private static final float[][] NONE = new float[0][0];

  // forward and backward
  float[][] query = NONE;
  float[][] scores = NONE;
  float[][] keysT = NONE;
  int[] rowKeyEnd = new int[0];
  // forward
  float[][] values = NONE;
  float[][] outAcc = NONE;
  float[] rowMax = new float[0];
  float[] rowSum = new float[0];
  // backward
  float[][] keys = NONE;
  float[][] valuesT = NONE;
  float[][] dKeys = NONE;
  float[][] dValues = NONE;
  float[][] dOut = NONE;
  float[][] dScores = NONE;
  float[][] dQuery = NONE;
  float[] rowDelta = new float[0];
  float[] rowLse = new float[0];

  void forForward(int queryBlock, int keyBlock, int headDim) {
    query = atLeast(query, queryBlock, headDim);
    scores = atLeast(scores, queryBlock, keyBlock);
    keysT = atLeast(keysT, headDim, keyBlock);
    values = atLeast(values, keyBlock, headDim);
    outAcc = atLeast(outAcc, queryBlock, headDim);
    rowMax = atLeast(rowMax, queryBlock);
    rowSum = atLeast(rowSum, queryBlock);
    rowKeyEnd = atLeast(rowKeyEnd, queryBlock);
  }

  /** Key tiles of a chunk are stacked: tile t's transposed rows are {@code [t * headDim, (t + 1) * headDim)}. */
  void forBackward(int queryBlock, int keyBlock, int keyChunk, int headDim) {
    int tiles = (keyChunk + keyBlock - 1) / keyBlock;
    query = atLeast(query, queryBlock, headDim);
    scores = atLeast(scores, queryBlock, keyBlock);
    dScores = atLeast(dScores, queryBlock, keyBlock);
    keys = atLeast(keys, keyChunk, headDim);
    keysT = atLeast(keysT, tiles * headDim, keyBlock);
    valuesT = atLeast(valuesT, tiles * headDim, keyBlock);
    dKeys = atLeast(dKeys, keyChunk, headDim);
    dValues = atLeast(dValues, keyChunk, headDim);
    dOut = atLeast(dOut, queryBlock, headDim);
    dQuery = atLeast(dQuery, queryBlock, headDim);
    rowDelta = atLeast(rowDelta, queryBlock);
    rowLse = atLeast(rowLse, queryBlock);
    rowKeyEnd = atLeast(rowKeyEnd, queryBlock);
  }

  private static float[][] atLeast(float[][] a, int rows, int columns) {
    if (a.length >= rows && (a.length == 0 || a[0].length >= columns)) {
      return a;
    }
    int width = Math.max(columns, a.length == 0 ? 0 : a[0].length);
    return new float[Math.max(rows, a.length)][width];
  }

  private static float[] atLeast(float[] a, int n) {
    return a.length >= n ? a : new float[n];
  }

  private static int[] atLeast(int[] a, int n) {
    return a.length >= n ? a : new int[n];
  }
}
