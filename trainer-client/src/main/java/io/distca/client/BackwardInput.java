package io.distca.client;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.Arrays;

/**
 * Backward inputs: the forward's micro-batch, its O and LSE, and the gradient dO. Stateless servers
 * need all of them again (DESIGN section 4).
 */
public record BackwardInput(MicroBatch batch, Tensor o, Tensor lse, Tensor dO) {
  public BackwardInput {
    MicroBatch.check("o", o, batch.tokens(), batch.shape().headsQ(), batch.shape());
    MicroBatch.check("do", dO, batch.tokens(), batch.shape().headsQ(), batch.shape());
    int[] lseShape = {batch.shape().headsQ(), batch.tokens()};
    if (lse.dtype() != DType.FP32 || !Arrays.equals(lse.shape(), lseShape)) {
      throw new IllegalArgumentException("lse is " + lse + ", expected fp32" + Arrays.toString(lseShape));
    }
  }
}
