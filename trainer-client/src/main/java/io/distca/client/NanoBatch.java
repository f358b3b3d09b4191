package io.distca.client;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;

/**
 * The tasks that go to one server in one request (half of a server's share: ping-pong). Tasks of
 * one document share one K/V segment covering the union of their key ranges (KV dedup), so a
 * document's keys cross the wire once per server, not once per shard.
 */
final class NanoBatch {
  final List<ClientTask> tasks;
  final List<Segment> segments = new ArrayList<>();
  private final int[] taskSegment;

  record Segment(int doc, int from, int to) {
    int length() {
      return to - from;
    }
  }

  NanoBatch(List<ClientTask> tasks) {
    this.tasks = List.copyOf(tasks);
    Map<Integer, int[]> range = new LinkedHashMap<>();
    for (ClientTask t : tasks) {
      range.merge(t.doc(), new int[] {t.kvStart(), t.kvEnd()},
          (a, b) -> new int[] {Math.min(a[0], b[0]), Math.max(a[1], b[1])});
    }
    Map<Integer, Integer> index = new LinkedHashMap<>();
    for (var e : range.entrySet()) {
      index.put(e.getKey(), segments.size());
      segments.add(new Segment(e.getKey(), e.getValue()[0], e.getValue()[1]));
    }
    taskSegment = new int[tasks.size()];
    for (int i = 0; i < tasks.size(); i++) {
      taskSegment[i] = index.get(tasks.get(i).doc());
    }
  }

  int queryTokens() {
    int n = 0;
    for (ClientTask t : tasks) {
      n += t.qLen();
    }
    return n;
  }

  int kvTokens() {
    int n = 0;
    for (Segment s : segments) {
      n += s.length();
    }
    return n;
  }

  /**
   * Room a request's frame needs beyond its tensor bytes: the header, the JSON metadata (a line per
   * task) and the Arrow IPC schema, record-batch message and padding; generous, so that an estimate
   * below the limit always encodes below it.
   */
  static long frameOverhead(int tasks) {
    return (64L << 10) + 256L * tasks;
  }

  /** Bytes of one query row's tensors in a request: q (backward adds do, and an lse and a delta column). */
  static long queryRowBytes(AttentionShape shape, boolean backward) {
    long row = (long) shape.headsQ() * shape.headDim() * shape.dtype().byteSize();
    return backward ? 2 * row + 8L * shape.headsQ() : row;
  }

  /** Bytes of one key row's tensors in a request: k and v. */
  static long keyRowBytes(AttentionShape shape) {
    return 2L * shape.headsKv() * shape.headDim() * shape.dtype().byteSize();
  }

  /** Tensor bytes of a request with {@code queryRows} query rows and {@code keyRows} (deduplicated) key rows. */
  static long tensorBytes(AttentionShape shape, boolean backward, long queryRows, long keyRows) {
    return queryRows * queryRowBytes(shape, backward) + keyRows * keyRowBytes(shape);
  }

  /** The frame this nano-batch's request encodes to, at most (tensor bytes exact, the rest {@link #frameOverhead}). */
  long frameBytes(AttentionShape shape, boolean backward) {
    return tensorBytes(shape, backward, queryTokens(), kvTokens()) + frameOverhead(tasks.size());
  }

  double flops(AttentionShape shape, boolean causal) {
    double f = 0;
    for (ClientTask t : tasks) {
      f += CostModel.forwardFlops(t.qLen(), t.kvLen(), shape.headsQ(), shape.headDim(), causal, t.diagonal(causal));
    }
    return f;
  }

  AttentionRequest meta(String job, long step, long deadlineEpochMs, int attempt, AttentionShape shape, boolean causal) {
    List<TaskSpec> specs = new ArrayList<>(tasks.size());
    for (int i = 0; i < tasks.size(); i++) {
      ClientTask t = tasks.get(i);
      Segment s = segments.get(taskSegment[i]);
      specs.add(new TaskSpec(t.id(), attempt, t.qLen(), taskSegment[i], t.kvStart() - s.from(), t.kvLen(), causal,
          t.diagonal(causal)));
    }
    int[] lens = new int[segments.size()];
    for (int i = 0; i < lens.length; i++) {
      lens[i] = segments.get(i).length();
    }
    return new AttentionRequest(job, step, deadlineEpochMs, shape.headsQ(), shape.headsKv(), shape.headDim(),
        shape.dtype().wireName(), shape.scale(), specs, lens);
  }

  /**
   * Gathers this nano-batch's rows into request tensors (q, k, v; backward adds do, lse, and delta =
   * rowsum(dO * O), computed here from the forward's O, which the request does not carry).
   */
  Message build(MessageType type, AttentionRequest meta, MicroBatch mb, int[] cu, BackwardInput bwd,
      BufferAllocator allocator) {
    AttentionShape shape = mb.shape();
    int tq = queryTokens();
    int tk = kvTokens();
    TensorSet set = new TensorSet();
    try {
      Tensor q = set.putNew("q", allocator, shape.dtype(), tq, shape.headsQ(), shape.headDim());
      Tensor k = set.putNew("k", allocator, shape.dtype(), tk, shape.headsKv(), shape.headDim());
      Tensor v = set.putNew("v", allocator, shape.dtype(), tk, shape.headsKv(), shape.headDim());
      int row = 0;
      for (Segment s : segments) {
        k.copyRowsFrom(mb.k(), cu[s.doc()] + s.from(), row, s.length());
        v.copyRowsFrom(mb.v(), cu[s.doc()] + s.from(), row, s.length());
        row += s.length();
      }
      gatherQueryRows(mb.q(), q, cu);
      if (bwd != null) {
        gatherQueryRows(bwd.dO(), set.putNew("do", allocator, shape.dtype(), tq, shape.headsQ(), shape.headDim()), cu);
        Tensor lse = set.putNew("lse", allocator, DType.FP32, shape.headsQ(), tq);
        Tensor delta = set.putNew("delta", allocator, DType.FP32, shape.headsQ(), tq);
        int col = 0;
        for (ClientTask t : tasks) {
          int from = cu[t.doc()] + t.qStart();
          LseColumns.copy(bwd.lse(), from, lse, col, t.qLen());
          AttentionDelta.computeInto(bwd.o().sliceRows(from, from + t.qLen()),
              bwd.dO().sliceRows(from, from + t.qLen()), delta, col);
          col += t.qLen();
        }
      }
      return Message.of(type, 0, meta, set);
    } catch (RuntimeException e) {
      set.close();
      throw e;
    }
  }

  private void gatherQueryRows(Tensor src, Tensor dst, int[] cu) {
    int row = 0;
    for (ClientTask t : tasks) {
      dst.copyRowsFrom(src, cu[t.doc()] + t.qStart(), row, t.qLen());
      row += t.qLen();
    }
  }
}
