package io.distca.loadtest.bench;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * A packed varlen batch of whole documents with random inputs, its outputs, and the forward and
 * backward {@link AttentionBatch}es over them: what the kernel benchmarks time.
 */
final class BenchBatch implements AutoCloseable {
  final AttentionShape shape;
  final boolean causal;
  final int[] lengths;
  final int tokens;
  final List<Tensor> tensors = new ArrayList<>();
  final Tensor q;
  final Tensor k;
  final Tensor v;
  final Tensor o;
  final Tensor lse;
  final Tensor dO;
  final Tensor dq;
  final Tensor dk;
  final Tensor dv;

  BenchBatch(BufferAllocator allocator, AttentionShape shape, boolean causal, int[] lengths, long seed) {
    this.shape = shape;
    this.causal = causal;
    this.lengths = lengths.clone();
    int t = 0;
    for (int len : lengths) {
      t += len;
    }
    this.tokens = t;
    SplittableRandom rnd = new SplittableRandom(seed);
    q = random(allocator, rnd, shape.headsQ());
    k = random(allocator, rnd, shape.headsKv());
    v = random(allocator, rnd, shape.headsKv());
    dO = random(allocator, rnd, shape.headsQ());
    o = track(Tensor.allocate(allocator, shape.dtype(), t, shape.headsQ(), shape.headDim()));
    lse = track(Tensor.allocate(allocator, DType.FP32, shape.headsQ(), t));
    dq = track(Tensor.allocate(allocator, shape.dtype(), t, shape.headsQ(), shape.headDim()));
    dk = track(Tensor.allocate(allocator, shape.dtype(), t, shape.headsKv(), shape.headDim()));
    dv = track(Tensor.allocate(allocator, shape.dtype(), t, shape.headsKv(), shape.headDim()));
  }

  private Tensor track(Tensor t) {
    tensors.add(t);
    return t;
  }

  /** Uniform values in [-1, 1), written as raw 16-bit patterns (fast enough for 10^8 elements). */
  private Tensor random(BufferAllocator allocator, SplittableRandom rnd, int heads) {
    Tensor t = track(Tensor.allocate(allocator, shape.dtype(), tokens, heads, shape.headDim()));
    long base = t.address();
    for (long i = 0; i < t.numel(); i++) {
      float x = (float) (rnd.nextDouble() * 2 - 1);
      switch (shape.dtype()) {
        case BF16 -> MemoryUtil.putShort(base + 2 * i, HalfFloats.floatToBf16(x));
        case FP16 -> MemoryUtil.putShort(base + 2 * i, HalfFloats.floatToFp16(x));
        default -> t.setFloat(i, x);
      }
    }
    return t;
  }

  AttentionBatch forward() {
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    int row = 0;
    for (int d = 0; d < lengths.length; d++) {
      int end = row + lengths[d];
      segments.add(KvSegment.forward(k.sliceRows(row, end), v.sliceRows(row, end)));
      slices.add(QuerySlice.forward(d, 0, lengths[d], causal, 0, q.sliceRows(row, end), o.sliceRows(row, end),
          new LseView(lse, row)));
      row = end;
    }
    return new AttentionBatch(shape, segments, slices);
  }

  AttentionBatch backward() {
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    int row = 0;
    for (int d = 0; d < lengths.length; d++) {
      int end = row + lengths[d];
      segments.add(new KvSegment(k.sliceRows(row, end), v.sliceRows(row, end), dk.sliceRows(row, end),
          dv.sliceRows(row, end)));
      slices.add(QuerySlice.backward(d, 0, lengths[d], causal, 0, q.sliceRows(row, end), o.sliceRows(row, end),
          new LseView(lse, row), dO.sliceRows(row, end), dq.sliceRows(row, end)));
      row = end;
    }
    return new AttentionBatch(shape, segments, slices);
  }

  /**
   * Forward FLOPs by FlashAttention's benchmark convention: 4 * s^2 * h * d per document, halved
   * when causal (so causal and full runs of one kernel compare directly).
   */
  double forwardFlopsFaConvention() {
    double f = 0;
    for (int len : lengths) {
      f += 4.0 * len * (double) len * shape.headsQ() * shape.headDim() / (causal ? 2 : 1);
    }
    return f;
  }

  @Override
  public void close() {
    for (Tensor t : tensors) {
      t.close();
    }
  }
}
