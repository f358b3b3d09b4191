package io.distca.server.backend;

import io.distca.protocol.tensor.Tensor;

/**
 * Where a per-row statistic of a query slice lives (its log-sum-exp, or the backward's delta):
 * {@code lse} is fp32 [heads_q, columns]; the slice's row i of head h is element
 * {@code h * columns + column + i}. The request-level layout is [heads, tokens], so a slice's run
 * is strided and cannot be a plain row slice.
 */
public record LseView(Tensor lse, int column) {
  public long index(int head, int row) {
    return (long) head * lse.dim(1) + column + row;
  }
}
