package io.distca.server.backend;

import io.distca.protocol.tensor.Tensor;

/**
 * Keys and values of one document prefix, shared by every query slice that names it (KV dedup).
 * {@code k}, {@code v}: [len, heads_kv, head_dim]. For backward, {@code dk} and {@code dv} (same
 * shape, input dtype) receive the sum of the gradients of every slice that reads this segment; rows
 * no slice reads are written as zero. For forward they are null.
 */
public record KvSegment(Tensor k, Tensor v, Tensor dk, Tensor dv) {
  public static KvSegment forward(Tensor k, Tensor v) {
    return new KvSegment(k, v, null, null);
  }

  public int length() {
    return k.dim(0);
  }
}
