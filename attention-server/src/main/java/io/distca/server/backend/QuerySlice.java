package io.distca.server.backend;

import io.distca.protocol.tensor.Tensor;

/**
 * One CA-task inside a fused batch: {@code q} [q_len, heads_q, head_dim] attends to keys
 * {@code [kvStart, kvStart + kvLen)} of segment {@code segment}. With {@code causal}, row i sees key
 * j of that range iff {@code j <= i + diagonal} (bottom-right alignment: diagonal = kvLen - q_len);
 * a row that sees no key gets O = 0 and LSE = -inf.
 *
 * <p>Forward: {@code o} (output, q's shape and dtype) and {@code lse} (output) are written.
 * Backward: {@code lse}, {@code delta} (rowsum(dO * O) in the LSE layout, {@link
 * io.distca.protocol.tensor.AttentionDelta}) and {@code dO} are inputs, {@code o} is null, and
 * {@code dq} (q's shape and dtype) is written.
 */
public record QuerySlice(
    int segment, int kvStart, int kvLen, boolean causal, int diagonal,
    Tensor q, Tensor o, LseView lse, LseView delta, Tensor dO, Tensor dq) {

  public static QuerySlice forward(
      int segment, int kvStart, int kvLen, boolean causal, int diagonal, Tensor q, Tensor o, LseView lse) {
    return new QuerySlice(segment, kvStart, kvLen, causal, diagonal, q, o, lse, null, null, null);
  }

  public static QuerySlice backward(
      int segment, int kvStart, int kvLen, boolean causal, int diagonal,
      Tensor q, LseView lse, LseView delta, Tensor dO, Tensor dq) {
    return new QuerySlice(segment, kvStart, kvLen, causal, diagonal, q, null, lse, delta, dO, dq);
  }

  public int qLen() {
    return q.dim(0);
  }
}
