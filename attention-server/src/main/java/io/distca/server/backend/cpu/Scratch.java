package io.distca.server.backend.cpu;

/**
 * One worker thread's fp32 tiles, grown on demand and reused across units and calls so that the hot
 * path allocates nothing. Sizes depend only on the options and head_dim: O(block), never O(len).
 */
final class Scratch {
  // forward and backward
  float[] query = new float[0];
  float[] scores = new float[0];
  float[] keysT = new float[0];
  float[] valuesT = new float[0];
  int[] rowKeyEnd = new int[0];
  // forward
  float[] values = new float[0];
  float[] outAcc = new float[0];
  float[] rowMax = new float[0];
  float[] rowSum = new float[0];
  // backward
  float[] keys = new float[0];
  float[] dKeys = new float[0];
  float[] dValues = new float[0];
  float[] dOut = new float[0];
  float[] outRow = new float[0];
  float[] rowDelta = new float[0];
  float[] rowLse = new float[0];
  float[] dScores = new float[0];
  float[] dQuery = new float[0];

  void forForward(int queryBlock, int keyBlock, int headDim) {
    query = atLeast(query, queryBlock * headDim);
    scores = atLeast(scores, queryBlock * keyBlock);
    keysT = atLeast(keysT, headDim * keyBlock);
    values = atLeast(values, keyBlock * headDim);
    outAcc = atLeast(outAcc, queryBlock * headDim);
    rowMax = atLeast(rowMax, queryBlock);
    rowSum = atLeast(rowSum, queryBlock);
    rowKeyEnd = atLeast(rowKeyEnd, queryBlock);
  }

  void forBackward(int queryBlock, int keyBlock, int keyChunk, int headDim) {
    query = atLeast(query, queryBlock * headDim);
    scores = atLeast(scores, queryBlock * keyBlock);
    dScores = atLeast(dScores, queryBlock * keyBlock);
    keys = atLeast(keys, keyChunk * headDim);
    keysT = atLeast(keysT, keyChunk * headDim);
    valuesT = atLeast(valuesT, keyChunk * headDim);
    dKeys = atLeast(dKeys, keyChunk * headDim);
    dValues = atLeast(dValues, keyChunk * headDim);
    dOut = atLeast(dOut, queryBlock * headDim);
    outRow = atLeast(outRow, headDim);
    rowDelta = atLeast(rowDelta, queryBlock);
    rowLse = atLeast(rowLse, queryBlock);
    rowKeyEnd = atLeast(rowKeyEnd, queryBlock);
    dQuery = atLeast(dQuery, queryBlock * headDim);
  }

  private static float[] atLeast(float[] a, int n) {
    return a.length >= n ? a : new float[n];
  }

  private static int[] atLeast(int[] a, int n) {
    return a.length >= n ? a : new int[n];
  }
}
