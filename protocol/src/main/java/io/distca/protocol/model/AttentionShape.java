package io.distca.protocol.model;

import io.distca.protocol.tensor.DType;

/**
 * What every CA-task of one fused batch shares: head counts, head size, element type and softmax
 * scale. Tasks of different shapes never fuse into one kernel launch. Masking is per task.
 */
public record AttentionShape(int headsQ, int headsKv, int headDim, DType dtype, float scale) {

  public static final int MAX_HEAD_DIM = 256;

  public static float defaultScale(int headDim) {
    return (float) (1.0 / Math.sqrt(headDim));
  }

  public int groupSize() {
    return headsQ / headsKv;
  }

  /** @return null when valid, else a description of the first problem found */
  public String problem() {
    if (headsQ <= 0) {
      return "heads_q must be positive, got " + headsQ;
    }
    if (headsKv <= 0) {
      return "heads_kv must be positive, got " + headsKv;
    }
    if (headsQ % headsKv != 0) {
      return "heads_q " + headsQ + " is not a multiple of heads_kv " + headsKv;
    }
    if (headDim <= 0 || headDim > MAX_HEAD_DIM) {
      return "head_dim must be in [1, " + MAX_HEAD_DIM + "], got " + headDim;
    }
    if (dtype == null || !dtype.isFloating()) {
      return "dtype must be bf16, fp16 or fp32, got " + dtype;
    }
    if (!(scale > 0) || Float.isInfinite(scale)) {
      return "scale must be positive and finite, got " + scale;
    }
    return null;
  }
}
