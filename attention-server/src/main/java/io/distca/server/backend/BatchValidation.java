package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.Arrays;
import java.util.List;

/**
 * Structural checks of a batch before a backend touches memory. The server validates requests
 * earlier; backends that read raw addresses still check the batch they are handed, because a wrong
 * shape there would read or write outside a buffer instead of failing with a message. The checks are
 * O(slices + segments); element values (finiteness) are the server's job.
 */
public final class BatchValidation {
  private BatchValidation() {}

  /** Which tensors a pass needs. */
  public enum Pass {
    FORWARD,
    BACKWARD
  }

  /** @throws IllegalArgumentException naming the first problem found */
  public static void requireWellFormed(AttentionBatch batch, Pass pass) {
    if (batch == null) {
      throw new IllegalArgumentException("attention batch is null");
    }
    AttentionShape shape = batch.shape();
    if (shape == null) {
      throw new IllegalArgumentException("attention batch has no shape");
    }
    String shapeProblem = shape.problem();
    if (shapeProblem != null) {
      throw new IllegalArgumentException("attention shape: " + shapeProblem);
    }
    List<KvSegment> segments = batch.segments();
    List<QuerySlice> slices = batch.slices();
    if (segments == null || slices == null) {
      throw new IllegalArgumentException("attention batch needs segment and slice lists");
    }
    int hq = shape.headsQ();
    int hkv = shape.headsKv();
    int d = shape.headDim();
    boolean backward = pass == Pass.BACKWARD;
    for (int i = 0; i < segments.size(); i++) {
      KvSegment seg = segments.get(i);
      String where = "segment " + i;
      if (seg == null) {
        throw new IllegalArgumentException(where + " is null");
      }
      Tensor k = seg.k();
      requireFloat(k, where + " k");
      int len = k.rank() == 3 ? k.dim(0) : -1;
      requireShape(k, where + " k", len, hkv, d);
      requireFloat(seg.v(), where + " v");
      requireShape(seg.v(), where + " v", len, hkv, d);
      if (backward) {
        requireFloat(seg.dk(), where + " dk");
        requireShape(seg.dk(), where + " dk", len, hkv, d);
        requireFloat(seg.dv(), where + " dv");
        requireShape(seg.dv(), where + " dv", len, hkv, d);
      }
    }
    for (int i = 0; i < slices.size(); i++) {
      QuerySlice s = slices.get(i);
      String where = "slice " + i;
      if (s == null) {
        throw new IllegalArgumentException(where + " is null");
      }
      if (s.segment() < 0 || s.segment() >= segments.size()) {
        throw new IllegalArgumentException(
            where + " names segment " + s.segment() + " but the batch has " + segments.size());
      }
      int segLen = segments.get(s.segment()).length();
      if (s.kvStart() < 0 || s.kvLen() < 0 || (long) s.kvStart() + s.kvLen() > segLen) {
        throw new IllegalArgumentException(where + " key range [" + s.kvStart() + ", "
            + ((long) s.kvStart() + s.kvLen()) + ") is outside segment " + s.segment() + " of length " + segLen);
      }
      requireFloat(s.q(), where + " q");
      int qLen = s.q().rank() == 3 ? s.q().dim(0) : -1;
      requireShape(s.q(), where + " q", qLen, hq, d);
      if (!backward) {
        requireFloat(s.o(), where + " o");
        requireShape(s.o(), where + " o", qLen, hq, d);
      }
      requireRowStatistic(s.lse(), where + " lse", hq, qLen);
      if (backward) {
        requireRowStatistic(s.delta(), where + " delta", hq, qLen);
        requireFloat(s.dO(), where + " dO");
        requireShape(s.dO(), where + " dO", qLen, hq, d);
        requireFloat(s.dq(), where + " dq");
        requireShape(s.dq(), where + " dq", qLen, hq, d);
      }
    }
  }

  /** An fp32 [heads, columns] view (LSE, delta) with the slice's qLen columns inside it. */
  private static void requireRowStatistic(LseView view, String what, int hq, int qLen) {
    if (view == null || view.lse() == null) {
      throw new IllegalArgumentException(what + " is missing");
    }
    Tensor t = view.lse();
    if (t.dtype() != DType.FP32 || t.rank() != 2 || t.dim(0) != hq) {
      throw new IllegalArgumentException(what + " must be fp32 [" + hq + ", columns], got " + t);
    }
    if (view.column() < 0 || (long) view.column() + qLen > t.dim(1)) {
      throw new IllegalArgumentException(what + " columns [" + view.column() + ", "
          + ((long) view.column() + qLen) + ") are outside " + t);
    }
  }

  private static void requireFloat(Tensor t, String what) {
    if (t == null) {
      throw new IllegalArgumentException(what + " is missing");
    }
    if (!t.dtype().isFloating()) {
      throw new IllegalArgumentException(what + " must be bf16, fp16 or fp32, got " + t.dtype());
    }
  }

  /** @param rows the expected row count, or -1 where the tensor itself defines it (then only its rank is checked) */
  private static void requireShape(Tensor t, String what, int rows, int heads, int headDim) {
    int[] expected = {rows, heads, headDim};
    if (rows < 0 || !Arrays.equals(t.shape(), expected)) {
      String rowText = rows < 0 ? "rows" : Integer.toString(rows);
      throw new IllegalArgumentException(what + " must have shape [" + rowText + ", " + heads + ", " + headDim
          + "], got " + Arrays.toString(t.shape()));
    }
  }
}
