package io.distca.deploy;

import io.distca.client.BackwardInput;
import io.distca.client.BackwardResult;
import io.distca.client.DistcaClient;
import io.distca.client.ForwardResult;
import io.distca.client.MicroBatch;
import io.distca.loadtest.LocalReference;
import io.distca.loadtest.TensorCompare;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Runs training steps (forward then backward core attention of every rank's micro-batch, all ranks
 * at once) through a cluster and checks each result against the same attention computed locally on
 * whole documents: the independent answer the distributed result must match.
 */
final class StepRunner {
  static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));
  /** bf16 outputs round at ~4e-3; gradients accumulate a little more. */
  static final double TOLERANCE = 2e-2;

  private final List<DistcaClient> clients;
  private final AttentionBackend reference;
  private final BufferAllocator allocator;

  /** Largest relative error seen, over O, LSE, dQ, dK, dV of every step. */
  private double maxError;

  StepRunner(List<DistcaClient> clients, AttentionBackend reference, BufferAllocator allocator) {
    this.clients = clients;
    this.reference = reference;
    this.allocator = allocator;
  }

  double maxError() {
    return maxError;
  }

  /**
   * One step: rank r gets the documents {@code docs[r]}. Throws AssertionError on a result that does
   * not match the reference, and the call's exception when the cluster fails the step.
   */
  void step(long step, int[][] docs, boolean causal) throws Exception {
    List<Tensor> owned = new ArrayList<>();
    try {
      List<MicroBatch> batches = new ArrayList<>();
      for (int r = 0; r < clients.size(); r++) {
        SplittableRandom rnd = new SplittableRandom(1000 * step + r);
        int tokens = 0;
        for (int len : docs[r]) {
          tokens += len;
        }
        Tensor q = random(rnd, tokens, SHAPE.headsQ());
        Tensor k = random(rnd, tokens, SHAPE.headsKv());
        Tensor v = random(rnd, tokens, SHAPE.headsKv());
        owned.addAll(List.of(q, k, v));
        batches.add(new MicroBatch(SHAPE, causal, docs[r], q, k, v));
      }
      List<CompletableFuture<ForwardResult>> fwd = new ArrayList<>();
      for (int r = 0; r < clients.size(); r++) {
        fwd.add(clients.get(r).forward(step, batches.get(r)));
      }
      List<BackwardInput> inputs = new ArrayList<>();
      for (int r = 0; r < clients.size(); r++) {
        ForwardResult fr = fwd.get(r).get(120, TimeUnit.SECONDS);
        owned.add(fr.o());
        owned.add(fr.lse());
        Tensor[] ref = LocalReference.forward(reference, batches.get(r), allocator);
        try {
          check("O of rank " + r, fr.o(), ref[0]);
          check("LSE of rank " + r, fr.lse(), ref[1]);
        } finally {
          ref[0].close();
          ref[1].close();
        }
        Tensor dO = random(new SplittableRandom(77 + r + step), batches.get(r).tokens(), SHAPE.headsQ());
        owned.add(dO);
        inputs.add(new BackwardInput(batches.get(r), fr.o(), fr.lse(), dO));
      }
      List<CompletableFuture<BackwardResult>> bwd = new ArrayList<>();
      for (int r = 0; r < clients.size(); r++) {
        bwd.add(clients.get(r).backward(step, inputs.get(r)));
      }
      for (int r = 0; r < clients.size(); r++) {
        try (BackwardResult br = bwd.get(r).get(120, TimeUnit.SECONDS)) {
          Tensor[] ref = LocalReference.backward(reference, inputs.get(r), allocator);
          try {
            check("dQ of rank " + r, br.dq(), ref[0]);
            check("dK of rank " + r, br.dk(), ref[1]);
            check("dV of rank " + r, br.dv(), ref[2]);
          } finally {
            for (Tensor t : ref) {
              t.close();
            }
          }
        }
      }
    } finally {
      for (Tensor t : owned) {
        t.close();
      }
    }
  }

  private void check(String what, Tensor actual, Tensor expected) {
    double e = TensorCompare.relativeMaxError(actual, expected);
    maxError = Math.max(maxError, e);
    if (!(e <= TOLERANCE)) {
      throw new AssertionError(what + ": relative error " + e + " above " + TOLERANCE);
    }
  }

  private Tensor random(SplittableRandom rnd, int tokens, int heads) {
    Tensor t = Tensor.allocate(allocator, SHAPE.dtype(), tokens, heads, SHAPE.headDim());
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }
}
