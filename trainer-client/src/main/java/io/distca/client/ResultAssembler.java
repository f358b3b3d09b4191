package io.distca.client;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.BitSet;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Puts task results back into the caller's layout. Each task's result is taken once (the first to
 * arrive; a duplicate from a retried request is dropped). Rows computed by exactly one task are
 * copied straight into the output; rows whose keys were split over several tasks (partial KV) are
 * merged with their log-sum-exp (DESIGN section 3) in fp32, and dK/dV rows read by several segments
 * are summed in fp32, then converted once at the end.
 *
 * <p>Responses of different servers arrive on different I/O threads; the assembler takes them one at
 * a time (the copies are memory copies, far cheaper than the transfer that preceded them), and a
 * result arriving after the call failed and released its tensors is ignored.
 */
final class ResultAssembler implements AutoCloseable {
  private final AttentionShape shape;
  private final List<ClientTask> tasks;
  private final int[] cu;
  private final int tokens;
  private final BitSet done;
  private final boolean[] singleQuery;
  private final BufferAllocator allocator;
  private int remaining;
  private final java.util.concurrent.atomic.AtomicLong dropped;
  private boolean closed;

  // forward
  private Tensor o;
  private Tensor lse;
  private Tensor oAcc; // fp32 [tokens, Hq, D], rows with several partial results only
  // backward
  private Tensor dq;
  private Tensor dqAcc;
  private Tensor dk;
  private Tensor dv;
  private Tensor dkAcc;
  private Tensor dvAcc;

  ResultAssembler(AttentionShape shape, boolean backward, List<ClientTask> tasks, int[] cu, BufferAllocator allocator) {
    this(shape, backward, tasks, cu, allocator, new java.util.concurrent.atomic.AtomicLong());
  }

  /** @param dropped counts task results dropped as duplicates (or arriving after the call ended) */
  ResultAssembler(AttentionShape shape, boolean backward, List<ClientTask> tasks, int[] cu, BufferAllocator allocator,
      java.util.concurrent.atomic.AtomicLong dropped) {
    this.dropped = dropped;
    this.shape = shape;
    this.tasks = tasks;
    this.cu = cu;
    this.tokens = cu[cu.length - 1];
    this.allocator = allocator;
    this.done = new BitSet(tasks.size());
    this.remaining = tasks.size();
    int[] qCoverage = new int[tokens];
    for (ClientTask t : tasks) {
      for (int i = cu[t.doc()] + t.qStart(); i < cu[t.doc()] + t.qEnd(); i++) {
        qCoverage[i]++;
      }
    }
    singleQuery = new boolean[tasks.size()];
    for (int n = 0; n < tasks.size(); n++) {
      ClientTask t = tasks.get(n);
      boolean single = true;
      for (int i = cu[t.doc()] + t.qStart(); i < cu[t.doc()] + t.qEnd() && single; i++) {
        single = qCoverage[i] == 1;
      }
      singleQuery[n] = single;
    }
    int hq = shape.headsQ();
    int d = shape.headDim();
    try {
      if (!backward) {
        o = Tensor.allocate(allocator, shape.dtype(), tokens, hq, d);
        lse = Tensor.allocate(allocator, DType.FP32, hq, tokens);
        for (long i = 0; i < lse.numel(); i++) {
          lse.setFloat(i, Float.NEGATIVE_INFINITY); // rows no task covers see no key
        }
        if (anyFalse(singleQuery)) {
          oAcc = Tensor.allocate(allocator, DType.FP32, tokens, hq, d);
        }
      } else {
        dq = Tensor.allocate(allocator, shape.dtype(), tokens, hq, d);
        if (anyFalse(singleQuery)) {
          dqAcc = Tensor.allocate(allocator, DType.FP32, tokens, hq, d);
        }
        dk = Tensor.allocate(allocator, shape.dtype(), tokens, shape.headsKv(), d);
        dv = Tensor.allocate(allocator, shape.dtype(), tokens, shape.headsKv(), d);
        dkAcc = Tensor.allocate(allocator, DType.FP32, tokens, shape.headsKv(), d);
        dvAcc = Tensor.allocate(allocator, DType.FP32, tokens, shape.headsKv(), d);
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  private static boolean anyFalse(boolean[] a) {
    for (boolean b : a) {
      if (!b) {
        return true;
      }
    }
    return false;
  }

  /** Marks a task taken; false if an earlier copy of its result was already taken. */
  private synchronized boolean claim(int taskIndex) {
    if (closed || done.get(taskIndex)) {
      dropped.incrementAndGet();
      return false;
    }
    done.set(taskIndex);
    remaining--;
    return true;
  }

  synchronized boolean complete() {
    return remaining == 0;
  }

  /** Forward results of a nano-batch: {@code ro} rows and {@code rlse} columns follow its task order. */
  synchronized void acceptForward(NanoBatch nb, List<Integer> taskIndices, Tensor ro, Tensor rlse) {
    int row = 0;
    for (int n = 0; n < nb.tasks.size(); n++) {
      ClientTask t = nb.tasks.get(n);
      int idx = taskIndices.get(n);
      int at = cu[t.doc()] + t.qStart();
      if (claim(idx)) {
        if (singleQuery[idx]) {
          o.copyRowsFrom(ro, row, at, t.qLen());
          LseColumns.copy(rlse, row, lse, at, t.qLen());
        } else {
          mergePartial(ro, rlse, row, at, t.qLen());
        }
      }
      row += t.qLen();
    }
  }

  /** Running log-sum-exp merge of a partial (O_i, lse_i) into the fp32 accumulator. */
  private synchronized void mergePartial(Tensor ro, Tensor rlse, int srcRow, int dstRow, int rows) {
    int hq = shape.headsQ();
    int d = shape.headDim();
    int srcCols = rlse.dim(1);
    for (int r = 0; r < rows; r++) {
      for (int h = 0; h < hq; h++) {
        float li = rlse.getFloat((long) h * srcCols + srcRow + r);
        long lseAt = (long) h * tokens + dstRow + r;
        float l = lse.getFloat(lseAt);
        float m = Math.max(l, li);
        if (m == Float.NEGATIVE_INFINITY) {
          continue; // both parts see no key: O stays 0, LSE -inf
        }
        float wOld = (float) Math.exp(l - m);
        float wNew = (float) Math.exp(li - m);
        float sum = wOld + wNew;
        float merged = m + (float) Math.log(sum);
        long oBase = ((long) (dstRow + r) * hq + h) * d;
        long iBase = ((long) (srcRow + r) * hq + h) * d;
        for (int x = 0; x < d; x++) {
          oAcc.setFloat(oBase + x, (oAcc.getFloat(oBase + x) * wOld + ro.getFloat(iBase + x) * wNew) / sum);
        }
        lse.setFloat(lseAt, merged);
      }
    }
  }

  /** Backward results: {@code rdq} rows follow the task order; {@code rdk}/{@code rdv} rows follow the segments. */
  synchronized void acceptBackward(NanoBatch nb, List<Integer> taskIndices, Tensor rdq, Tensor rdk, Tensor rdv) {
    boolean[] fresh = new boolean[nb.tasks.size()];
    boolean anyFresh = false;
    int row = 0;
    for (int n = 0; n < nb.tasks.size(); n++) {
      ClientTask t = nb.tasks.get(n);
      int idx = taskIndices.get(n);
      int at = cu[t.doc()] + t.qStart();
      if (claim(idx)) {
        fresh[n] = true;
        anyFresh = true;
        if (singleQuery[idx]) {
          dq.copyRowsFrom(rdq, row, at, t.qLen());
        } else {
          addRows(rdq, row, dqAcc, at, t.qLen());
        }
      }
      row += t.qLen();
    }
    if (!anyFresh) {
      return;
    }
    for (boolean f : fresh) {
      if (!f) {
        // a retried request overlapping an earlier answer would double-count dK/dV; requests are
        // retried whole, so a partly fresh request means the task lists diverged
        throw new IllegalStateException("backward response mixes new and already-taken tasks");
      }
    }
    int seg = 0;
    for (NanoBatch.Segment s : nb.segments) {
      addRows(rdk, seg, dkAcc, cu[s.doc()] + s.from(), s.length());
      addRows(rdv, seg, dvAcc, cu[s.doc()] + s.from(), s.length());
      seg += s.length();
    }
  }

  private synchronized void addRows(Tensor src, int srcRow, Tensor acc, int dstRow, int rows) {
    long width = acc.rowStride();
    long from = (long) srcRow * width;
    long to = (long) dstRow * width;
    long n = rows * width;
    for (long i = 0; i < n; i++) {
      acc.setFloat(to + i, acc.getFloat(to + i) + src.getFloat(from + i));
    }
  }

  /** Converts merged rows into O and hands O and LSE over; {@code stats} (may be null) gain the time this took. */
  ForwardResult finishForward(StepStats stats) {
    long start = System.nanoTime();
    if (oAcc != null) {
      int hq = shape.headsQ();
      long width = (long) hq * shape.headDim();
      for (int n = 0; n < tasks.size(); n++) {
        if (!singleQuery[n]) {
          ClientTask t = tasks.get(n);
          for (int r = cu[t.doc()] + t.qStart(); r < cu[t.doc()] + t.qEnd(); r++) {
            for (long x = 0; x < width; x++) {
              o.setFloat(r * width + x, oAcc.getFloat(r * width + x));
            }
          }
        }
      }
      oAcc.close();
      oAcc = null;
    }
    ForwardResult result = new ForwardResult(o, lse, withAssembly(stats, start));
    o = null;
    lse = null;
    close();
    return result;
  }

  /** Converts the fp32 sums into dQ, dK, dV and hands them over; {@code stats} (may be null) gain the time this took. */
  BackwardResult finishBackward(StepStats stats) {
    long start = System.nanoTime();
    if (dqAcc != null) {
      long width = dq.rowStride();
      for (int n = 0; n < tasks.size(); n++) {
        if (!singleQuery[n]) {
          ClientTask t = tasks.get(n);
          for (long i = (cu[t.doc()] + t.qStart()) * width; i < (cu[t.doc()] + t.qEnd()) * width; i++) {
            dq.setFloat(i, dqAcc.getFloat(i));
          }
        }
      }
    }
    dk.copyFrom(dkAcc);
    dv.copyFrom(dvAcc);
    BackwardResult result = new BackwardResult(dq, dk, dv, withAssembly(stats, start));
    dq = null;
    dk = null;
    dv = null;
    close();
    return result;
  }

  private static StepStats withAssembly(StepStats stats, long startNanos) {
    return stats == null ? null : stats.withAssembly(System.nanoTime() - startNanos);
  }

  @Override
  public synchronized void close() {
    closed = true;
    for (Tensor t : new Tensor[] {o, lse, oAcc, dq, dqAcc, dk, dv, dkAcc, dvAcc}) {
      if (t != null) {
        t.close();
      }
    }
    o = lse = oAcc = dq = dqAcc = dk = dv = dkAcc = dvAcc = null;
  }
}
