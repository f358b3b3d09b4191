package io.distca.server;

import io.distca.protocol.message.ThroughputPoint;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Measures the backend's forward throughput once at start, on causal tasks of a few sizes with
 * random data (8 query heads, 2 KV heads, head_dim 128, bf16), so that the dispatcher can weigh
 * heterogeneous servers by what they really deliver. The last (largest) point is the long-task rate.
 */
final class Calibration {
  /** Query lengths measured; square causal tasks. The reference backend is too slow for the big one. */
  private static final int[] SIZES = {128, 512, 2048};

  private Calibration() {}

  static List<ThroughputPoint> measure(AttentionBackend backend, BufferAllocator allocator) {
    List<ThroughputPoint> table = new ArrayList<>();
    for (int tokens : SIZES) {
      if (backend.name().equals("reference") && tokens > 128) {
        break;
      }
      table.add(new ThroughputPoint(tokens, tokens, measure(backend, allocator, tokens)));
    }
    return table;
  }

  private static double measure(AttentionBackend backend, BufferAllocator allocator, int tokens) {
    AttentionShape shape = new AttentionShape(8, 2, 128, DType.BF16, AttentionShape.defaultScale(128));
    try (Tensor q = Tensor.allocate(allocator, DType.BF16, tokens, 8, 128);
        Tensor k = Tensor.allocate(allocator, DType.BF16, tokens, 2, 128);
        Tensor v = Tensor.allocate(allocator, DType.BF16, tokens, 2, 128);
        Tensor o = Tensor.allocate(allocator, DType.BF16, tokens, 8, 128);
        Tensor lse = Tensor.allocate(allocator, DType.FP32, 8, tokens)) {
      SplittableRandom rnd = new SplittableRandom(7);
      for (Tensor t : new Tensor[] {q, k, v}) {
        for (long i = 0; i < t.numel(); i++) {
          t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
        }
      }
      AttentionBatch batch = new AttentionBatch(shape, List.of(KvSegment.forward(k, v)),
          List.of(QuerySlice.forward(0, 0, tokens, true, 0, q, o, new LseView(lse, 0))));
      backend.forward(batch); // warm-up: JIT, pools, module load
      long best = Long.MAX_VALUE;
      for (int i = 0; i < 3; i++) {
        long t0 = System.nanoTime();
        backend.forward(batch);
        best = Math.min(best, System.nanoTime() - t0);
      }
      return batch.forwardFlops() / (Math.max(best, 1) / 1e9);
    }
  }
}
