package io.distca.client;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.Tensor;
import java.util.Arrays;

/**
 * The core-attention inputs of one micro-batch on one trainer rank, in varlen layout: documents of
 * {@code docLengths} packed back to back; {@code q} [tokens, heads_q, head_dim], {@code k} and
 * {@code v} [tokens, heads_kv, head_dim]. The caller keeps the tensors alive until the returned
 * future completes.
 */
public record MicroBatch(AttentionShape shape, boolean causal, int[] docLengths, Tensor q, Tensor k, Tensor v) {

  public MicroBatch {
    String problem = shape.problem();
    if (problem != null) {
      throw new IllegalArgumentException(problem);
    }
    long tokens = 0;
    for (int i = 0; i < docLengths.length; i++) {
      if (docLengths[i] < 0) {
        throw new IllegalArgumentException("doc_lengths[" + i + "] is negative: " + docLengths[i]);
      }
      tokens += docLengths[i];
    }
    check("q", q, tokens, shape.headsQ(), shape);
    check("k", k, tokens, shape.headsKv(), shape);
    check("v", v, tokens, shape.headsKv(), shape);
  }

  static void check(String name, Tensor t, long tokens, int heads, AttentionShape shape) {
    int[] expected = {(int) tokens, heads, shape.headDim()};
    if (!Arrays.equals(t.shape(), expected) || t.dtype() != shape.dtype()) {
      throw new IllegalArgumentException(name + " is " + t + ", expected " + shape.dtype() + Arrays.toString(expected));
    }
  }

  public int tokens() {
    return q.dim(0);
  }

  /** Start row of every document, plus the total at the end (cu_seqlens). */
  public int[] cuSeqlens() {
    int[] cu = new int[docLengths.length + 1];
    for (int i = 0; i < docLengths.length; i++) {
      cu[i + 1] = cu[i] + docLengths[i];
    }
    return cu;
  }
}
