package io.distca.loadtest;

import io.distca.client.BackwardInput;
import io.distca.client.BackwardResult;
import io.distca.client.DistcaClient;
import io.distca.client.ForwardResult;
import io.distca.client.MicroBatch;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.OwnedTensors;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;

/**
 * One training step of core attention through a cluster, checked: every rank's micro-batch (Q, K, V
 * and dO drawn from seeded generators) goes forward and then backward through its client, all ranks
 * at once as a data-parallel job would, and each result is compared with the same attention
 * computed in this process on whole documents ({@link LocalReference}): the independent answer the
 * distributed result must match. What {@code distca demo} and the cluster tests run.
 */
public final class CheckedStep {
  /** The five results compared, in the order of {@link Result#errors()}. */
  public static final List<String> TENSORS = List.of("O", "LSE", "dQ", "dK", "dV");

  /**
   * What one step measured.
   *
   * @param errors largest relative error (max |a - b| / max |b|) of O, LSE, dQ, dK, dV over the ranks
   * @param worstRank for each of those, the rank where it occurred
   * @param forwardSeconds wall time from the first forward call to the last forward result
   * @param backwardSeconds likewise for the backward
   * @param tokens query tokens of all ranks
   * @param tasks CA-tasks the clients shipped (forward)
   * @param requests requests the clients sent (forward)
   * @param planImbalance the largest plan imbalance a client reported
   */
  public record Result(double[] errors, int[] worstRank, double forwardSeconds, double backwardSeconds, long tokens,
      int tasks, int requests, double planImbalance) {

    /** Throws an AssertionError naming the first result whose error is above its bound (bounds in TENSORS order). */
    public void requireWithin(double... bounds) {
      for (int i = 0; i < errors.length; i++) {
        if (!(errors[i] <= bounds[Math.min(i, bounds.length - 1)])) {
          throw new AssertionError(TENSORS.get(i) + " of rank " + worstRank[i] + ": relative error " + errors[i]
              + " above " + bounds[Math.min(i, bounds.length - 1)]);
        }
      }
    }

    public double maxError() {
      double m = 0;
      for (double e : errors) {
        m = Math.max(m, e);
      }
      return m;
    }
  }

  private final List<DistcaClient> clients;
  private final AttentionBackend reference;
  private final BufferAllocator allocator;
  private final Duration timeout;

  /**
   * @param reference the backend that computes the local answer (e.g. the CPU backend or the float64
   *     reference)
   * @param timeout how long one rank's forward or backward result may take
   */
  public CheckedStep(List<DistcaClient> clients, AttentionBackend reference, BufferAllocator allocator, Duration timeout) {
    this.clients = List.copyOf(clients);
    this.reference = reference;
    this.allocator = allocator;
    this.timeout = timeout;
  }

  /**
   * Runs step {@code step}: client r gets the documents {@code docs[r]}; inputs come from
   * {@code seed}, the step and the rank. Throws the call's exception when the cluster fails the step.
   */
  public Result run(long step, AttentionShape shape, boolean causal, int[][] docs, long seed) throws Exception {
    int ranks = clients.size();
    if (docs.length != ranks) {
      throw new IllegalArgumentException(docs.length + " document lists for " + ranks + " clients");
    }
    double[] errors = new double[TENSORS.size()];
    int[] worst = new int[TENSORS.size()];
    try (OwnedTensors owned = new OwnedTensors(allocator)) {
      List<MicroBatch> batches = new ArrayList<>();
      long tokens = 0;
      for (int r = 0; r < ranks; r++) {
        SplittableRandom rnd = new SplittableRandom(seed * 1_000_003L + step * 1009L + r);
        int t = 0;
        for (int len : docs[r]) {
          t += len;
        }
        Tensor q = owned.adopt(random(allocator, rnd, shape.dtype(), t, shape.headsQ(), shape.headDim()));
        Tensor k = owned.adopt(random(allocator, rnd, shape.dtype(), t, shape.headsKv(), shape.headDim()));
        Tensor v = owned.adopt(random(allocator, rnd, shape.dtype(), t, shape.headsKv(), shape.headDim()));
        batches.add(new MicroBatch(shape, causal, docs[r], q, k, v));
        tokens += t;
      }
      long t0 = System.nanoTime();
      List<CompletableFuture<ForwardResult>> fwd = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        fwd.add(clients.get(r).forward(step, batches.get(r)));
      }
      List<ForwardResult> forwards = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        ForwardResult fr = fwd.get(r).get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        owned.adopt(fr.o());
        owned.adopt(fr.lse());
        forwards.add(fr);
      }
      double forwardSeconds = (System.nanoTime() - t0) / 1e9;
      int tasks = 0;
      int requests = 0;
      double imbalance = 0;
      List<BackwardInput> inputs = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        ForwardResult fr = forwards.get(r);
        tasks += fr.stats().tasks();
        requests += fr.stats().requests();
        imbalance = Math.max(imbalance, fr.stats().planImbalance());
        compare(LocalReference.forward(reference, batches.get(r), allocator), new Tensor[] {fr.o(), fr.lse()}, 0, r,
            errors, worst);
        SplittableRandom rnd = new SplittableRandom(seed * 7919L + step * 31L + r);
        Tensor dO = owned.adopt(random(allocator, rnd, shape.dtype(), batches.get(r).tokens(), shape.headsQ(),
            shape.headDim()));
        inputs.add(new BackwardInput(batches.get(r), fr.o(), fr.lse(), dO));
      }
      t0 = System.nanoTime();
      List<CompletableFuture<BackwardResult>> bwd = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        bwd.add(clients.get(r).backward(step, inputs.get(r)));
      }
      List<BackwardResult> backwards = new ArrayList<>();
      try {
        for (int r = 0; r < ranks; r++) {
          backwards.add(bwd.get(r).get(timeout.toMillis(), TimeUnit.MILLISECONDS));
        }
        double backwardSeconds = (System.nanoTime() - t0) / 1e9;
        for (int r = 0; r < ranks; r++) {
          BackwardResult br = backwards.get(r);
          compare(LocalReference.backward(reference, inputs.get(r), allocator), new Tensor[] {br.dq(), br.dk(), br.dv()},
              2, r, errors, worst);
        }
        return new Result(errors, worst, forwardSeconds, backwardSeconds, tokens, tasks, requests, imbalance);
      } finally {
        for (BackwardResult br : backwards) {
          br.close();
        }
      }
    }
  }

  /** Folds the errors of {@code actual} against {@code expected} (closed here) into errors[first..]. */
  private static void compare(Tensor[] expected, Tensor[] actual, int first, int rank, double[] errors, int[] worst) {
    try {
      for (int i = 0; i < actual.length; i++) {
        double e = TensorCompare.relativeMaxError(actual[i], expected[i]);
        if (!(e <= errors[first + i])) { // NaN counts as worse than anything
          errors[first + i] = Double.isNaN(e) ? Double.POSITIVE_INFINITY : e;
          worst[first + i] = rank;
        }
      }
    } finally {
      for (Tensor t : expected) {
        t.close();
      }
    }
  }

  /** Uniform values in [-1, 1). */
  public static Tensor random(BufferAllocator allocator, SplittableRandom rnd, DType dtype, int... shape) {
    Tensor t = Tensor.allocate(allocator, dtype, shape);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }
}
