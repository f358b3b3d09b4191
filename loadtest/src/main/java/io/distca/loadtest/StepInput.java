package io.distca.loadtest;

import io.distca.client.MicroBatch;
import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import io.distca.protocol.tensor.Tensor;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;

/**
 * One rank's inputs for one step: documents sampled to fill the token budget, Q, K, V and the
 * gradient dO, uniform in [-1, 1). A function of (seed, step, rank) alone, so a run with the same
 * seed sees the same documents and values. Every layer of the step reuses them: the values do not
 * change the work, and generating fresh ones per layer would cost the client more than the servers.
 */
final class StepInput implements AutoCloseable {
  final MicroBatch batch;
  final Tensor dO;
  final double forwardFlops;

  private StepInput(MicroBatch batch, Tensor dO, double forwardFlops) {
    this.batch = batch;
    this.dO = dO;
    this.forwardFlops = forwardFlops;
  }

  static StepInput generate(DocLengthDistribution docs, int tokensPerRank, AttentionShape shape, boolean causal,
      boolean backward, long seed, long step, int rank, BufferAllocator allocator) {
    SplittableRandom rnd = new SplittableRandom(mix(seed, step, rank));
    int[] lengths = docs.fillRank(tokensPerRank, rnd);
    double flops = 0;
    for (int len : lengths) {
      flops += CostModel.forwardFlops(len, len, shape.headsQ(), shape.headDim(), causal);
    }
    Tensor q = null;
    Tensor k = null;
    Tensor v = null;
    Tensor dO = null;
    try {
      q = CheckedStep.random(allocator, rnd, shape.dtype(), tokensPerRank, shape.headsQ(), shape.headDim());
      k = CheckedStep.random(allocator, rnd, shape.dtype(), tokensPerRank, shape.headsKv(), shape.headDim());
      v = CheckedStep.random(allocator, rnd, shape.dtype(), tokensPerRank, shape.headsKv(), shape.headDim());
      if (backward) {
        dO = CheckedStep.random(allocator, rnd, shape.dtype(), tokensPerRank, shape.headsQ(), shape.headDim());
      }
      return new StepInput(new MicroBatch(shape, causal, lengths, q, k, v), dO, flops);
    } catch (RuntimeException e) {
      for (Tensor t : new Tensor[] {q, k, v, dO}) {
        if (t != null) {
          t.close();
        }
      }
      throw e;
    }
  }

  /** A seed per (run seed, step, rank) that differs in every argument. */
  static long mix(long seed, long step, long rank) {
    long h = seed * 0x9E3779B97F4A7C15L + step * 0xBF58476D1CE4E5B9L + rank * 0x94D049BB133111EBL;
    h ^= h >>> 31;
    return h * 0xD6E8FEB86657A6EBL;
  }

  int tokens() {
    return batch.tokens();
  }

  @Override
  public void close() {
    batch.q().close();
    batch.k().close();
    batch.v().close();
    if (dO != null) {
      dO.close();
    }
  }
}
