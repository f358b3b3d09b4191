package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Core attention in float64 by the textbook formula: per query row the whole score row is
 * materialised, O(len^2) work and O(len) memory per row. It exists to be obviously right, not fast:
 * tests prove other backends against it, {@code distca demo} and the load test spot-check results
 * with it. Inputs of any float dtype are widened to double; outputs are narrowed only when written
 * into the output tensors' dtype.
 *
 * <p>Backward follows FlashAttention: it takes O and LSE as given rather than recomputing them, with
 * {@code D = rowsum(dO * O)}, {@code P = exp(S * scale - LSE)}, {@code dS = P * (dP - D)}. The
 * float64 entry points ({@link #forward(DoubleBatch)}, {@link #backward(DoubleBatch, List, List,
 * List)}) let tests differentiate numerically without any rounding in between.
 *
 * <p>Work is spread over the common fork-join pool; the backend owns no resources.
 */
public final class ReferenceAttention implements AttentionBackend {
  public static final String NAME = "reference";

  /** K and V of one segment, packed [length, heads_kv, head_dim]. */
  public record DoubleSegment(int length, double[] k, double[] v) {}

  /** One query slice; {@code q} packed [qLen, heads_q, head_dim]. Masking as in {@link QuerySlice}. */
  public record DoubleSlice(int segment, int kvStart, int kvLen, boolean causal, int diagonal, int qLen, double[] q) {}

  /** A whole batch in float64. */
  public record DoubleBatch(
      int headsQ, int headsKv, int headDim, double scale, List<DoubleSegment> segments, List<DoubleSlice> slices) {

    /** Widens the inputs (Q, K, V) of a tensor batch. */
    public static DoubleBatch of(AttentionBatch batch) {
      AttentionShape shape = batch.shape();
      List<DoubleSegment> segments = new ArrayList<>();
      for (KvSegment s : batch.segments()) {
        segments.add(new DoubleSegment(s.length(), toDoubles(s.k()), toDoubles(s.v())));
      }
      List<DoubleSlice> slices = new ArrayList<>();
      for (QuerySlice s : batch.slices()) {
        slices.add(new DoubleSlice(
            s.segment(), s.kvStart(), s.kvLen(), s.causal(), s.diagonal(), s.qLen(), toDoubles(s.q())));
      }
      return new DoubleBatch(shape.headsQ(), shape.headsKv(), shape.headDim(), shape.scale(), segments, slices);
    }

    int groupSize() {
      return headsQ / headsKv;
    }
  }

  /** Per slice: O packed like Q, LSE packed [heads_q, qLen]. */
  public record ForwardResult(List<double[]> o, List<double[]> lse) {}

  /** dQ per slice (packed like Q); dK and dV per segment (packed like K). */
  public record Gradients(List<double[]> dq, List<double[]> dk, List<double[]> dv) {}

  @Override
  public String name() {
    return NAME;
  }

  @Override
  public String device() {
    return "cpu float64 reference";
  }

  @Override
  public void forward(AttentionBatch batch) {
    BatchValidation.requireWellFormed(batch, BatchValidation.Pass.FORWARD);
    ForwardResult result = forward(DoubleBatch.of(batch));
    int hq = batch.shape().headsQ();
    IntStream.range(0, batch.slices().size()).parallel().forEach(i -> {
      QuerySlice s = batch.slices().get(i);
      fromDoubles(result.o().get(i), s.o());
      double[] lse = result.lse().get(i);
      for (int h = 0; h < hq; h++) {
        for (int row = 0; row < s.qLen(); row++) {
          s.lse().lse().setFloat(s.lse().index(h, row), (float) lse[h * s.qLen() + row]);
        }
      }
    });
  }

  @Override
  public void backward(AttentionBatch batch) {
    BatchValidation.requireWellFormed(batch, BatchValidation.Pass.BACKWARD);
    int hq = batch.shape().headsQ();
    List<double[]> delta = new ArrayList<>();
    List<double[]> lse = new ArrayList<>();
    List<double[]> dO = new ArrayList<>();
    for (QuerySlice s : batch.slices()) {
      dO.add(toDoubles(s.dO()));
      lse.add(rowStatistic(s.lse(), hq, s.qLen()));
      delta.add(rowStatistic(s.delta(), hq, s.qLen()));
    }
    Gradients g = backwardFromDelta(DoubleBatch.of(batch), delta, lse, dO);
    for (int i = 0; i < batch.slices().size(); i++) {
      fromDoubles(g.dq().get(i), batch.slices().get(i).dq());
    }
    for (int i = 0; i < batch.segments().size(); i++) {
      fromDoubles(g.dk().get(i), batch.segments().get(i).dk());
      fromDoubles(g.dv().get(i), batch.segments().get(i).dv());
    }
  }

  /** O and LSE of every slice, in float64. */
  public static ForwardResult forward(DoubleBatch b) {
    return forwardByHead(b, (s, head, o, lse) -> forwardHead(b, s, head, o, lse));
  }

  /** One query head of one slice's forward: writes that head's O rows and LSE entries of the slice. */
  public interface HeadForward {
    void compute(DoubleSlice s, int head, double[] o, double[] lse);
  }

  /**
   * O and LSE of every slice (packed as in {@link ForwardResult}, starting at zero), each (slice,
   * query head) computed by {@code head}, in parallel: no two share an element.
   */
  public static ForwardResult forwardByHead(DoubleBatch b, HeadForward head) {
    int hq = b.headsQ();
    int d = b.headDim();
    List<double[]> o = new ArrayList<>();
    List<double[]> lse = new ArrayList<>();
    for (DoubleSlice s : b.slices()) {
      o.add(new double[s.qLen() * hq * d]);
      lse.add(new double[hq * s.qLen()]);
    }
    IntStream.range(0, b.slices().size() * hq).parallel().forEach(task -> {
      int sliceIndex = task / hq;
      head.compute(b.slices().get(sliceIndex), task % hq, o.get(sliceIndex), lse.get(sliceIndex));
    });
    return new ForwardResult(o, lse);
  }

  private static void forwardHead(DoubleBatch b, DoubleSlice s, int head, double[] o, double[] lse) {
    int d = b.headDim();
    int kvHead = head / b.groupSize();
    DoubleSegment seg = b.segments().get(s.segment());
    double[] scores = new double[s.kvLen()];
    for (int row = 0; row < s.qLen(); row++) {
      int keys = CausalMask.keyEnd(s.causal(), s.diagonal(), s.kvLen(), row);
      int qAt = at(row, b.headsQ(), head, d);
      if (keys == 0) {
        lse[head * s.qLen() + row] = Double.NEGATIVE_INFINITY;
        continue; // O stays zero
      }
      double max = Double.NEGATIVE_INFINITY;
      for (int j = 0; j < keys; j++) {
        scores[j] = b.scale() * dot(s.q(), qAt, seg.k(), at(s.kvStart() + j, b.headsKv(), kvHead, d), d);
        max = Math.max(max, scores[j]);
      }
      double sum = 0;
      for (int j = 0; j < keys; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (int j = 0; j < keys; j++) {
        double p = scores[j] / sum;
        int vAt = at(s.kvStart() + j, b.headsKv(), kvHead, d);
        for (int e = 0; e < d; e++) {
          o[qAt + e] += p * seg.v()[vAt + e];
        }
      }
      lse[head * s.qLen() + row] = max + Math.log(sum);
    }
  }

  /** A slice's [heads, qLen] run of a per-row statistic (LSE, delta) as doubles. */
  static double[] rowStatistic(LseView view, int hq, int qLen) {
    double[] values = new double[hq * qLen];
    for (int h = 0; h < hq; h++) {
      for (int row = 0; row < qLen; row++) {
        values[h * qLen + row] = view.lse().getFloat(view.index(h, row));
      }
    }
    return values;
  }

  /**
   * dQ, dK, dV for upstream gradient {@code dO}, given the forward's O and LSE (per slice, packed as
   * in {@link ForwardResult}): {@link #backwardFromDelta} with delta = rowsum(dO * O) in float64.
   */
  public static Gradients backward(DoubleBatch b, List<double[]> o, List<double[]> lse, List<double[]> dO) {
    int hq = b.headsQ();
    int d = b.headDim();
    List<double[]> delta = new ArrayList<>();
    for (int i = 0; i < b.slices().size(); i++) {
      int qLen = b.slices().get(i).qLen();
      double[] rows = new double[hq * qLen];
      for (int h = 0; h < hq; h++) {
        for (int row = 0; row < qLen; row++) {
          int qAt = at(row, hq, h, d);
          rows[h * qLen + row] = dot(dO.get(i), qAt, o.get(i), qAt, d);
        }
      }
      delta.add(rows);
    }
    return backwardFromDelta(b, delta, lse, dO);
  }

  /**
   * dQ, dK, dV for upstream gradient {@code dO}, given the forward's LSE and delta = rowsum(dO * O)
   * (per slice, [heads_q, q_len] as the LSE of {@link ForwardResult}). Work is split by (segment, kv
   * head): such a unit is the only writer of its dK/dV rows and of the dQ of every query head in its
   * group, so no two threads share an element.
   */
  public static Gradients backwardFromDelta(DoubleBatch b, List<double[]> delta, List<double[]> lse,
      List<double[]> dO) {
    int d = b.headDim();
    List<double[]> dq = new ArrayList<>();
    for (DoubleSlice s : b.slices()) {
      dq.add(new double[s.qLen() * b.headsQ() * d]);
    }
    List<double[]> dk = new ArrayList<>();
    List<double[]> dv = new ArrayList<>();
    for (DoubleSegment seg : b.segments()) {
      dk.add(new double[seg.length() * b.headsKv() * d]);
      dv.add(new double[seg.length() * b.headsKv() * d]);
    }
    IntStream.range(0, b.segments().size() * b.headsKv()).parallel().forEach(task -> {
      int segIndex = task / b.headsKv();
      int kvHead = task % b.headsKv();
      for (int i = 0; i < b.slices().size(); i++) {
        if (b.slices().get(i).segment() != segIndex) {
          continue;
        }
        for (int t = 0; t < b.groupSize(); t++) {
          backwardHead(b, i, kvHead * b.groupSize() + t, delta.get(i), lse.get(i), dO.get(i),
              dq.get(i), dk.get(segIndex), dv.get(segIndex));
        }
      }
    });
    return new Gradients(dq, dk, dv);
  }

  private static void backwardHead(DoubleBatch b, int sliceIndex, int head, double[] delta, double[] lse,
      double[] dO, double[] dq, double[] dk, double[] dv) {
    DoubleSlice s = b.slices().get(sliceIndex);
    DoubleSegment seg = b.segments().get(s.segment());
    int d = b.headDim();
    int kvHead = head / b.groupSize();
    double scale = b.scale();
    for (int row = 0; row < s.qLen(); row++) {
      int keys = CausalMask.keyEnd(s.causal(), s.diagonal(), s.kvLen(), row);
      if (keys == 0) {
        continue; // a row that sees nothing has no gradient
      }
      int qAt = at(row, b.headsQ(), head, d);
      double rowLse = lse[head * s.qLen() + row];
      double rowDelta = delta[head * s.qLen() + row];
      for (int j = 0; j < keys; j++) {
        int kAt = at(s.kvStart() + j, b.headsKv(), kvHead, d);
        double p = Math.exp(scale * dot(s.q(), qAt, seg.k(), kAt, d) - rowLse);
        double dp = dot(dO, qAt, seg.v(), kAt, d);
        double ds = p * (dp - rowDelta);
        for (int e = 0; e < d; e++) {
          dq[qAt + e] += scale * ds * seg.k()[kAt + e];
          dk[kAt + e] += scale * ds * s.q()[qAt + e];
          dv[kAt + e] += p * dO[qAt + e];
        }
      }
    }
  }

  private static int at(int row, int heads, int head, int headDim) {
    return (row * heads + head) * headDim;
  }

  private static double dot(double[] a, int aAt, double[] b, int bAt, int n) {
    double sum = 0;
    for (int e = 0; e < n; e++) {
      sum += a[aAt + e] * b[bAt + e];
    }
    return sum;
  }

  /** Widens every element of {@code t}; the reference is for small inputs, so it must fit one array. */
  public static double[] toDoubles(Tensor t) {
    if (t.numel() > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("reference attention handles small inputs only, got " + t);
    }
    double[] out = new double[(int) t.numel()];
    for (int i = 0; i < out.length; i++) {
      out[i] = t.getFloat(i);
    }
    return out;
  }

  /** Narrows {@code values} into {@code t}'s dtype (through float, as every backend's fp32 results are). */
  public static void fromDoubles(double[] values, Tensor t) {
    if (values.length != t.numel()) {
      throw new IllegalArgumentException(values.length + " values for " + t);
    }
    for (int i = 0; i < values.length; i++) {
      t.setFloat(i, (float) values[i]);
    }
  }

  @Override
  public void close() {
    // owns nothing: the common pool is not ours to stop
  }
}
