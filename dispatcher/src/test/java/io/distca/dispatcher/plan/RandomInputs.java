package io.distca.dispatcher.plan;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.ModelSpec;
import io.distca.protocol.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Seeded random plan inputs that reach the corners: empty and one-token documents, long ones, odd servers. */
final class RandomInputs {
  private RandomInputs() {}

  static PlanInput next(SplittableRandom rng) {
    AttentionShape shape = rng.nextBoolean()
        ? ModelSpec.LLAMA_3_8B.attentionShape()
        : new AttentionShape(8, 2, 64, DType.FP16, 0.125f);
    boolean causal = rng.nextInt(4) != 0;
    int ranks = 1 + rng.nextInt(6);
    List<int[]> docs = new ArrayList<>();
    for (int r = 0; r < ranks; r++) {
      int[] lengths = new int[rng.nextInt(12)];
      for (int d = 0; d < lengths.length; d++) {
        lengths[d] = randomLength(rng);
      }
      docs.add(lengths);
    }
    int serverCount = 1 + rng.nextInt(12);
    boolean heterogeneous = rng.nextBoolean();
    List<ServerCapacity> servers = new ArrayList<>();
    for (int s = 0; s < serverCount; s++) {
      double throughput = heterogeneous ? 1e14 * (1 + rng.nextInt(4)) : 3.3e14;
      servers.add(ServerCapacity.unlimited("server-" + s, throughput));
    }
    int minShard = new int[] {1, 16, 128, 200}[rng.nextInt(4)];
    int maxShard = Math.max(minShard, 256) * (1 + rng.nextInt(16));
    double tolerance = new double[] {0, 0.01, 0.05, 0.2}[rng.nextInt(4)];
    SplitStyle style = rng.nextInt(3) == 0 ? SplitStyle.HEAD_TAIL : SplitStyle.PREFIX;
    int cutAlign = Math.min(minShard, new int[] {1, 16, 64, 128}[rng.nextInt(4)]);
    PlanOptions options = PlanOptions.defaults().withShardTokens(minShard, maxShard).withTolerance(tolerance)
        .withSplitStyle(style).withCutAlignTokens(cutAlign);
    return new PlanInput(shape, causal, docs, servers, options);
  }

  private static int randomLength(SplittableRandom rng) {
    switch (rng.nextInt(6)) {
      case 0:
        return rng.nextInt(3); // 0, 1 or 2 tokens
      case 1:
        return 1 + rng.nextInt(300);
      case 2:
        return 100 + rng.nextInt(5_000);
      case 3:
        return 1_000 + rng.nextInt(40_000);
      case 4:
        return 30_000 + rng.nextInt(200_000);
      default:
        return 127 + rng.nextInt(3); // around the default minimum shard
    }
  }
}
