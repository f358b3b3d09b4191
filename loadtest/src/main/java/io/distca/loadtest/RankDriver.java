package io.distca.loadtest;

import io.distca.client.BackwardInput;
import io.distca.client.BackwardResult;
import io.distca.client.DistcaClient;
import io.distca.client.ForwardResult;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.apache.arrow.memory.BufferAllocator;

/**
 * One simulated trainer rank: per step, inputs generated, then (in lockstep with the other ranks)
 * every layer's forward and backward sent through its own {@link DistcaClient}, then the sampled
 * layers checked against the local reference. A failed call ends the rank's step (the layers after
 * it would need its result) and is reported; the rank goes on with the next step.
 */
final class RankDriver implements Runnable {
  private final int rank;
  private final LoadTestOptions options;
  private final DistcaClient client;
  private final StepGate gate;
  private final LoadMetrics metrics;
  private final SpotCheck check;
  private final BufferAllocator allocator;
  private final AtomicLong completedCalls;
  private final Consumer<String> failures;
  private final Consumer<SpotCheck.Result> checked;

  RankDriver(int rank, LoadTestOptions options, DistcaClient client, StepGate gate, LoadMetrics metrics,
      SpotCheck check, BufferAllocator allocator, AtomicLong completedCalls, Consumer<String> failures,
      Consumer<SpotCheck.Result> checked) {
    this.rank = rank;
    this.options = options;
    this.client = client;
    this.gate = gate;
    this.metrics = metrics;
    this.check = check;
    this.allocator = allocator;
    this.completedCalls = completedCalls;
    this.failures = failures;
    this.checked = checked;
  }

  @Override
  public void run() {
    try {
      for (long next = 0; ; next++) {
        // inputs are made before the step starts, so their cost is outside the step's time
        try (StepInput input = StepInput.generate(options.distribution(), options.tokensPerRank, options.shape(),
            options.causal, options.backward, options.seed, next, rank, allocator)) {
          long step = gate.begin();
          if (step < 0) {
            return;
          }
          List<SpotCheck.Sampled> sampled = new ArrayList<>();
          try {
            runLayers(step, input, sampled);
            gate.end();
            for (SpotCheck.Result r : check.verify(step, rank, input, sampled, allocator)) {
              checked.accept(r);
            }
          } finally {
            sampled.forEach(SpotCheck.Sampled::close);
          }
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failures.accept("rank " + rank + " was interrupted");
      gate.leave();
    } catch (RuntimeException | Error e) {
      failures.accept("rank " + rank + " stopped: " + e);
      gate.leave();
      throw e;
    }
  }

  private void runLayers(long step, StepInput input, List<SpotCheck.Sampled> sampled) throws InterruptedException {
    boolean measured = step >= options.warmupSteps;
    double tokenShare = (double) input.tokens() / options.layers / (options.backward ? 2 : 1);
    for (int layer = 0; layer < options.layers; layer++) {
      ForwardResult fwd;
      try {
        fwd = client.forward(step, input.batch).get();
      } catch (ExecutionException e) {
        callFailed(step, layer, "forward", e.getCause());
        return;
      }
      long done = System.nanoTime();
      completedCalls.incrementAndGet();
      if (measured) {
        if (layer == 0) {
          metrics.recordPlan(fwd.stats().planWaitNanos(), fwd.stats().planImbalance());
        }
        metrics.recordCall(step, false, fwd.stats(), tokenShare, done);
      }
      SpotCheck.Sampled keep = check.sampled(step, rank, layer) ? new SpotCheck.Sampled(layer, fwd) : null;
      try {
        if (options.backward && !runBackward(step, layer, input, fwd, keep, measured, tokenShare)) {
          return;
        }
      } finally {
        if (keep != null) {
          sampled.add(keep);
        } else {
          fwd.close();
        }
      }
    }
  }

  /** One layer's backward; false when it failed. */
  private boolean runBackward(long step, int layer, StepInput input, ForwardResult fwd, SpotCheck.Sampled keep,
      boolean measured, double tokenShare) throws InterruptedException {
    BackwardInput in = new BackwardInput(input.batch, fwd.o(), fwd.lse(), input.dO);
    BackwardResult bwd;
    try {
      bwd = client.backward(step, in).get();
    } catch (ExecutionException e) {
      callFailed(step, layer, "backward", e.getCause());
      return false;
    }
    long done = System.nanoTime();
    completedCalls.incrementAndGet();
    if (measured) {
      metrics.recordCall(step, true, bwd.stats(), tokenShare, done);
    }
    if (keep != null) {
      keep.backwardInput = in;
      keep.backward = bwd;
    } else {
      bwd.close();
    }
    return true;
  }

  private void callFailed(long step, int layer, String pass, Throwable cause) {
    metrics.recordFailedCall();
    failures.accept("step " + step + ", rank " + rank + ", layer " + layer + ": " + pass + " failed: " + cause);
  }
}
