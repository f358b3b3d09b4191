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
  /** What a rank is doing now, for the stall watchdog and its diagnostic. */
  static final class Status {
    private final int rank;
    private volatile String doing = "starting";
    private volatile boolean local = true;
    private volatile long sinceNanos = System.nanoTime();

    Status(int rank) {
      this.rank = rank;
    }

    void set(String doing, boolean local) {
      this.doing = doing;
      this.local = local;
      this.sinceNanos = System.nanoTime();
    }

    /** Busy with work of its own (inputs, checks), not waiting on the cluster or on other ranks. */
    boolean local() {
      return local;
    }

    String describe(long nowNanos) {
      return "rank " + rank + ": " + doing + " for " + (nowNanos - sinceNanos) / 1_000_000 + " ms";
    }
  }

  private final int rank;
  private final Status status;
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
      Consumer<SpotCheck.Result> checked, Status status) {
    this.rank = rank;
    this.status = status;
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
        status.set("generating the inputs of its step " + next, true);
        try (StepInput input = StepInput.generate(options.distribution(), options.tokensPerRank, options.shape(),
            options.causal, options.backward, options.seed, next, rank, allocator)) {
          status.set("waiting for the other ranks to start step " + next, false);
          long step = gate.begin();
          if (step < 0) {
            status.set("done", true);
            return;
          }
          List<SpotCheck.Sampled> sampled = new ArrayList<>();
          try {
            runLayers(step, input, sampled);
            status.set("waiting for the other ranks to end step " + step, false);
            gate.end();
            status.set("checking step " + step + " against the local reference", true);
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
      failures.accept("rank " + rank + " was interrupted while " + status.doing);
      status.set("stopped (interrupted)", true);
      gate.leave();
    } catch (RuntimeException | Error e) {
      failures.accept("rank " + rank + " stopped: " + e);
      status.set("stopped: " + e, true);
      gate.leave();
      throw e;
    }
  }

  private void runLayers(long step, StepInput input, List<SpotCheck.Sampled> sampled) throws InterruptedException {
    boolean measured = step >= options.warmupSteps;
    double tokenShare = (double) input.tokens() / options.layers / (options.backward ? 2 : 1);
    for (int layer = 0; layer < options.layers; layer++) {
      ForwardResult fwd;
      status.set("in the forward call of layer " + layer + ", step " + step, false);
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
    status.set("in the backward call of layer " + layer + ", step " + step, false);
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
