package io.distca.deploy;

import io.distca.client.DistcaClient;
import io.distca.loadtest.CheckedStep;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AttentionBackend;
import java.time.Duration;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Runs training steps (forward then backward core attention of every rank's micro-batch, all ranks
 * at once) through a cluster and checks each result against the same attention computed locally on
 * whole documents ({@link CheckedStep}): the independent answer the distributed result must match.
 */
final class StepRunner {
  static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));
  /** bf16 outputs round at ~4e-3; gradients accumulate a little more. */
  static final double TOLERANCE = 2e-2;

  private final CheckedStep checked;

  /** Largest relative error seen, over O, LSE, dQ, dK, dV of every step. */
  private double maxError;

  StepRunner(List<DistcaClient> clients, AttentionBackend reference, BufferAllocator allocator) {
    this.checked = new CheckedStep(clients, reference, allocator, Duration.ofSeconds(120));
  }

  double maxError() {
    return maxError;
  }

  /**
   * One step: rank r gets the documents {@code docs[r]}. Throws AssertionError on a result that does
   * not match the reference, and the call's exception when the cluster fails the step.
   */
  void step(long step, int[][] docs, boolean causal) throws Exception {
    CheckedStep.Result result = checked.run(step, SHAPE, causal, docs, 0);
    maxError = Math.max(maxError, result.maxError());
    result.requireWithin(TOLERANCE);
  }
}
