package io.distca.server.backend;

import io.distca.protocol.tensor.Tensor;

/**
 * Where the log-sum-exp of a query slice lives: {@code lse} is fp32 [heads_q, columns]; the slice's
 * row i of head h is element {@code h * columns + column + i}. The request-level LSE layout is
 * [heads, tokens], so a slice's LSE is strided and cannot be a plain row slice.
 */
public record LseView(Tensor lse, int column) {
  public long index(int head, int row) {
    return (long) head * lse.dim(1) + column + row;
  }
}
