package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import java.util.List;

/**
 * A fused batch: query slices of possibly many requests and clients, over shared K/V segments, all
 * of one {@link AttentionShape}. Backends run it as one launch. The batch only references tensors;
 * their owners (the requests) keep them alive until the backend returns.
 */
public record AttentionBatch(AttentionShape shape, List<KvSegment> segments, List<QuerySlice> slices) {

  public double forwardFlops() {
    double f = 0;
    for (QuerySlice s : slices) {
      f += CostModel.forwardFlops(s.qLen(), s.kvLen(), shape.headsQ(), shape.headDim(), s.causal(), s.diagonal());
    }
    return f;
  }

  public long queryTokens() {
    long n = 0;
    for (QuerySlice s : slices) {
      n += s.qLen();
    }
    return n;
  }
}
