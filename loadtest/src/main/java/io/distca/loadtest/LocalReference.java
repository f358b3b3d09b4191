package io.distca.loadtest;

import io.distca.client.BackwardInput;
import io.distca.client.MicroBatch;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Core attention of a whole micro-batch computed in this process, one slice per document, with no
 * sharding, no wire and no merging: the independent answer the distributed result must match.
 */
public final class LocalReference {
  private LocalReference() {}

  /** Returns {o, lse}; the caller closes both. */
  public static Tensor[] forward(AttentionBackend backend, MicroBatch mb, BufferAllocator allocator) {
    int t = mb.tokens();
    Tensor o = Tensor.allocate(allocator, mb.shape().dtype(), t, mb.shape().headsQ(), mb.shape().headDim());
    Tensor lse = Tensor.allocate(allocator, DType.FP32, mb.shape().headsQ(), t);
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    int[] cu = mb.cuSeqlens();
    for (int d = 0; d < mb.docLengths().length; d++) {
      int from = cu[d];
      int to = cu[d + 1];
      segments.add(KvSegment.forward(mb.k().sliceRows(from, to), mb.v().sliceRows(from, to)));
      slices.add(QuerySlice.forward(d, 0, to - from, mb.causal(), 0, mb.q().sliceRows(from, to),
          o.sliceRows(from, to), new LseView(lse, from)));
    }
    backend.forward(new AttentionBatch(mb.shape(), segments, slices));
    return new Tensor[] {o, lse};
  }

  /** Returns {dq, dk, dv}; the caller closes them. */
  public static Tensor[] backward(AttentionBackend backend, BackwardInput in, BufferAllocator allocator) {
    MicroBatch mb = in.batch();
    int t = mb.tokens();
    Tensor dq = Tensor.allocate(allocator, mb.shape().dtype(), t, mb.shape().headsQ(), mb.shape().headDim());
    Tensor dk = Tensor.allocate(allocator, mb.shape().dtype(), t, mb.shape().headsKv(), mb.shape().headDim());
    Tensor dv = Tensor.allocate(allocator, mb.shape().dtype(), t, mb.shape().headsKv(), mb.shape().headDim());
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    int[] cu = mb.cuSeqlens();
    try (Tensor delta = AttentionDelta.of(allocator, in.o(), in.dO())) {
      for (int d = 0; d < mb.docLengths().length; d++) {
        int from = cu[d];
        int to = cu[d + 1];
        segments.add(new KvSegment(mb.k().sliceRows(from, to), mb.v().sliceRows(from, to),
            dk.sliceRows(from, to), dv.sliceRows(from, to)));
        slices.add(QuerySlice.backward(d, 0, to - from, mb.causal(), 0, mb.q().sliceRows(from, to),
            new LseView(in.lse(), from), new LseView(delta, from), in.dO().sliceRows(from, to),
            dq.sliceRows(from, to)));
      }
      backend.backward(new AttentionBatch(mb.shape(), segments, slices));
    }
    return new Tensor[] {dq, dk, dv};
  }
}
