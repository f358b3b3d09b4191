package io.distca.client;

import io.distca.protocol.tensor.Tensor;

/** O [tokens, heads_q, head_dim] in the input dtype and LSE fp32 [heads_q, tokens]. */
public record ForwardResult(Tensor o, Tensor lse, StepStats stats) implements AutoCloseable {
  @Override
  public void close() {
    o.close();
    lse.close();
  }
}
