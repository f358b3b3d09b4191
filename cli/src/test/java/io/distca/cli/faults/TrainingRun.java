package io.distca.cli.faults;

import io.distca.client.BackwardInput;
import io.distca.client.BackwardResult;
import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.client.ForwardResult;
import io.distca.client.MicroBatch;
import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.function.IntConsumer;
import org.apache.arrow.memory.BufferAllocator;

/**
 * A few training steps of several ranks against a cluster, with the same inputs for the same seed;
 * keeps every output (as floats) so that a faulted run can be compared with a fault-free one, and
 * times each step.
 */
final class TrainingRun {
  static final AttentionShape SHAPE = new AttentionShape(4, 2, 32, DType.BF16, AttentionShape.defaultScale(32));
  static final String[] OUTPUTS = {"o", "lse", "dq", "dk", "dv"};

  final int ranks;
  final int steps;
  final int tokensPerRank;
  final long seed;
  /** outputs[step][rank][output] */
  final float[][][][] outputs;
  final long[] stepMillis;
  long retries;
  long droppedResults;
  long localPlans;

  TrainingRun(int ranks, int steps, int tokensPerRank, long seed) {
    this.ranks = ranks;
    this.steps = steps;
    this.tokensPerRank = tokensPerRank;
    this.seed = seed;
    this.outputs = new float[steps][ranks][OUTPUTS.length][];
    this.stepMillis = new long[steps];
  }

  /**
   * Runs every step. {@code duringStep} is called right after the step's forward calls went out,
   * which is where faults are injected.
   */
  TrainingRun run(int dispatcherPort, BufferAllocator root, IntConsumer duringStep) {
    List<DistcaClient> clients = new ArrayList<>();
    try {
      for (int r = 0; r < ranks; r++) {
        ClientContext cc = new ClientContext();
        cc.dispatcherPort = dispatcherPort;
        cc.job = "faults";
        cc.rank = r;
        cc.worldSize = ranks;
        cc.shardTokens = 512;
        cc.requestTimeout = Duration.ofSeconds(20);
        cc.stepTimeout = Duration.ofSeconds(90);
        cc.pingIntervalMs = 250;
        cc.pingTimeoutMs = 1500;
        clients.add(new DistcaClient(cc, root));
      }
      for (int step = 0; step < steps; step++) {
        runStep(step, clients, root, duringStep);
      }
      for (DistcaClient c : clients) {
        retries += c.retries();
        droppedResults += c.droppedResults();
        localPlans += c.localPlans();
      }
      return this;
    } finally {
      for (DistcaClient c : clients) {
        c.close();
      }
    }
  }

  private void runStep(int step, List<DistcaClient> clients, BufferAllocator root, IntConsumer duringStep) {
    List<Tensor> owned = new ArrayList<>();
    try {
      List<MicroBatch> batches = new ArrayList<>();
      List<Tensor> grads = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        SplittableRandom rnd = new SplittableRandom(seed * 1_000_003L + step * 101L + r);
        int[] docs = DocLengthDistribution.pretrain().fillRank(tokensPerRank, rnd);
        Tensor q = random(root, rnd, tokensPerRank, SHAPE.headsQ());
        Tensor k = random(root, rnd, tokensPerRank, SHAPE.headsKv());
        Tensor v = random(root, rnd, tokensPerRank, SHAPE.headsKv());
        Tensor dO = random(root, rnd, tokensPerRank, SHAPE.headsQ());
        owned.addAll(List.of(q, k, v, dO));
        grads.add(dO);
        batches.add(new MicroBatch(SHAPE, true, docs, q, k, v));
      }
      long t0 = System.nanoTime();
      List<CompletableFuture<ForwardResult>> fwd = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        fwd.add(clients.get(r).forward(step, batches.get(r)));
      }
      duringStep.accept(step);
      List<CompletableFuture<BackwardResult>> bwd = new ArrayList<>();
      for (int r = 0; r < ranks; r++) {
        ForwardResult f = fwd.get(r).join();
        owned.add(f.o());
        owned.add(f.lse());
        outputs[step][r][0] = floats(f.o());
        outputs[step][r][1] = floats(f.lse());
        bwd.add(clients.get(r).backward(step, new BackwardInput(batches.get(r), f.o(), f.lse(), grads.get(r))));
      }
      for (int r = 0; r < ranks; r++) {
        try (BackwardResult b = bwd.get(r).join()) {
          outputs[step][r][2] = floats(b.dq());
          outputs[step][r][3] = floats(b.dk());
          outputs[step][r][4] = floats(b.dv());
        }
      }
      stepMillis[step] = (System.nanoTime() - t0) / 1_000_000;
    } finally {
      for (Tensor t : owned) {
        t.close();
      }
    }
  }

  private static Tensor random(BufferAllocator root, SplittableRandom rnd, int tokens, int heads) {
    Tensor t = Tensor.allocate(root, DType.BF16, tokens, heads, SHAPE.headDim());
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }

  private static float[] floats(Tensor t) {
    float[] a = new float[(int) t.numel()];
    for (int i = 0; i < a.length; i++) {
      a[i] = t.getFloat(i);
    }
    return a;
  }
}
