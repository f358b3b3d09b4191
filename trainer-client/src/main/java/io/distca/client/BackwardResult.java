package io.distca.client;

import io.distca.protocol.tensor.Tensor;

/** dQ like q; dK and dV like k and v (summed over every task that read them). */
public record BackwardResult(Tensor dq, Tensor dk, Tensor dv, StepStats stats) implements AutoCloseable {
  @Override
  public void close() {
    dq.close();
    dk.close();
    dv.close();
  }
}
