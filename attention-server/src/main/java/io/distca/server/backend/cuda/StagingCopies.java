package io.distca.server.backend.cuda;

import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.List;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Host-side copies between a batch's tensors and a staging block laid out by {@link FusedBatchPlan}:
 * gather packs inputs before the upload, scatter unpacks outputs after the download. The copies are
 * collected into a {@link CopyList} (run by a {@link ParallelCopier}); raw addresses are safe because
 * the plan has checked every dtype and the batch validation every shape and range first.
 *
 * <p>Gather lists its copies in increasing staging (destination) order and scatter in increasing
 * staging (source) order, buffer by buffer in layout order, so that a prefix of either list touches
 * a prefix of the staging block: the backend uploads each gathered chunk while it gathers the next,
 * and scatters each downloaded chunk while the next one downloads.
 *
 * <p>With a {@link DirectCopies} (the backend has a pinned buffer pool), every tensor copy is offered
 * to it first, in the same order; the copies it takes (tensors in pinned memory) are left out of the
 * list and go straight between the tensor and the device.
 */
final class StagingCopies {
  private StagingCopies() {}

  static {
    if (!MemoryUtil.LITTLE_ENDIAN) {
      throw new ExceptionInInitializerError("the CUDA backend writes descriptors in host order and needs a little-endian host");
    }
  }

  /** Adds the copies that pack every input of the plan's pass at {@code base}, in staging order. */
  static void gather(FusedBatchPlan plan, AttentionBatch batch, long base, CopyList copies) {
    gather(plan, batch, base, copies, null);
  }

  /**
   * As {@link #gather(FusedBatchPlan, AttentionBatch, long, CopyList)}, offering each copy to {@code direct}
   * first (null: none) with its arena offset; only the refused ones are added to {@code copies}.
   */
  static void gather(FusedBatchPlan plan, AttentionBatch batch, long base, CopyList copies, DirectCopies direct) {
    Sink sink = new Sink(base, copies, direct);
    FusedBatchPlan.Layout at = plan.layout;
    List<QuerySlice> slices = batch.slices();
    List<KvSegment> segments = batch.segments();
    long qRow = plan.queryRowBytes();
    long kRow = plan.keyRowBytes();
    for (int i = 0; i < slices.size(); i++) {
      sink.in(slices.get(i).q(), base + at.q() + plan.sliceQStart[i] * qRow);
    }
    for (int g = 0; g < segments.size(); g++) {
      sink.in(segments.get(g).k(), base + at.k() + plan.segmentKStart[g] * kRow);
    }
    for (int g = 0; g < segments.size(); g++) {
      sink.in(segments.get(g).v(), base + at.v() + plan.segmentKStart[g] * kRow);
    }
    if (plan.pass == FusedBatchPlan.Pass.FORWARD) {
      return;
    }
    for (int i = 0; i < slices.size(); i++) {
      sink.in(slices.get(i).dO(), base + at.dout() + plan.sliceQStart[i] * qRow);
    }
    gatherRowStatistic(plan, slices, QuerySlice::lse, base + at.lse(), sink);
    gatherRowStatistic(plan, slices, QuerySlice::delta, base + at.dsum(), sink);
  }

  /**
   * A per-row statistic (LSE, delta) of every slice into its fused [heads, totalQ] buffer at
   * {@code to}: the request's is [heads, columns], so one run per head and slice.
   */
  private static void gatherRowStatistic(FusedBatchPlan plan, List<QuerySlice> slices,
      java.util.function.Function<QuerySlice, LseView> statistic, long to, Sink sink) {
    for (int h = 0; h < plan.shape.headsQ(); h++) {
      for (int i = 0; i < slices.size(); i++) {
        LseView view = statistic.apply(slices.get(i));
        sink.in(view.lse().address() + 4L * view.index(h, 0),
            to + 4L * ((long) h * plan.totalQ + plan.sliceQStart[i]), 4L * slices.get(i).qLen());
      }
    }
  }

  /** Writes the descriptor arrays and work list at {@code base} (small: written directly). */
  static void writeDescriptors(FusedBatchPlan plan, long base) {
    FusedBatchPlan.Layout at = plan.layout;
    putInts(plan.sliceDescriptors, base + at.slices());
    putInts(plan.work, base + at.work());
    if (plan.pass == FusedBatchPlan.Pass.BACKWARD) {
      putInts(plan.segmentDescriptors, base + at.segments());
      putInts(plan.segmentSlices, base + at.segmentSlices());
    }
  }

  /** Adds the copies that unpack the plan's outputs from {@code base} into the batch, in staging order. */
  static void scatter(FusedBatchPlan plan, AttentionBatch batch, long base, CopyList copies) {
    scatter(plan, batch, base, copies, null);
  }

  /** As {@link #scatter(FusedBatchPlan, AttentionBatch, long, CopyList)}, offering each copy to {@code direct} first. */
  static void scatter(FusedBatchPlan plan, AttentionBatch batch, long base, CopyList copies, DirectCopies direct) {
    Sink sink = new Sink(base, copies, direct);
    FusedBatchPlan.Layout at = plan.layout;
    List<QuerySlice> slices = batch.slices();
    long qRow = plan.queryRowBytes();
    if (plan.pass == FusedBatchPlan.Pass.FORWARD) {
      for (int i = 0; i < slices.size(); i++) {
        sink.out(base + at.o() + plan.sliceQStart[i] * qRow, slices.get(i).o());
      }
      for (int h = 0; h < plan.shape.headsQ(); h++) {
        for (int i = 0; i < slices.size(); i++) {
          LseView view = slices.get(i).lse();
          sink.out(base + at.lse() + 4L * ((long) h * plan.totalQ + plan.sliceQStart[i]),
              view.lse().address() + 4L * view.index(h, 0), 4L * slices.get(i).qLen());
        }
      }
      return;
    }
    for (int i = 0; i < slices.size(); i++) {
      sink.out(base + at.dq() + plan.sliceQStart[i] * qRow, slices.get(i).dq());
    }
    long kRow = plan.keyRowBytes();
    List<KvSegment> segments = batch.segments();
    for (int g = 0; g < segments.size(); g++) {
      sink.out(base + at.dk() + plan.segmentKStart[g] * kRow, segments.get(g).dk());
    }
    for (int g = 0; g < segments.size(); g++) {
      sink.out(base + at.dv() + plan.segmentKStart[g] * kRow, segments.get(g).dv());
    }
  }

  /** Where the copies of one gather or scatter go: to the direct list when it takes them, else to the copy list. */
  private record Sink(long base, CopyList copies, DirectCopies direct) {
    void in(Tensor tensor, long destination) {
      in(tensor.address(), destination, tensor.byteSize());
    }

    void in(long source, long destination, long bytes) {
      if (direct == null || !direct.offer(source, destination - base, bytes)) {
        copies.add(source, destination, bytes);
      }
    }

    void out(long source, Tensor tensor) {
      out(source, tensor.address(), tensor.byteSize());
    }

    void out(long source, long destination, long bytes) {
      if (direct == null || !direct.offer(destination, source - base, bytes)) {
        copies.add(source, destination, bytes);
      }
    }
  }

  private static void putInts(int[] values, long address) {
    for (int i = 0; i < values.length; i++) {
      MemoryUtil.putInt(address + 4L * i, values[i]);
    }
  }
}
