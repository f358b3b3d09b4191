package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Random tensors for one batch, allocated from a child allocator that close() checks for leaks.
 * Q, K, V and dO are seeded Gaussians; outputs start as NaN so that a backend that forgets to write
 * an element is caught. All slices share one LSE tensor [heads_q, 2 + total_q + 3], each slice at its
 * own column window, as in a request.
 */
public final class AttentionFixture implements AutoCloseable {

  /** Masking and placement of one slice, as in {@link QuerySlice}. */
  public record SliceSpec(int segment, int kvStart, int kvLen, boolean causal, int diagonal, int qLen) {
    /** A query shard of the last qLen tokens of a key prefix of length kvLen, bottom-right causal. */
    public static SliceSpec causalBottomRight(int segment, int qLen, int kvLen) {
      return new SliceSpec(segment, 0, kvLen, true, kvLen - qLen, qLen);
    }

    public static SliceSpec full(int segment, int kvStart, int kvLen, int qLen) {
      return new SliceSpec(segment, kvStart, kvLen, false, 0, qLen);
    }
  }

  /** A named batch for parameterized backend tests: shape, segment lengths and slices. */
  public record Case(String name, AttentionShape shape, int[] segments, List<SliceSpec> slices) {
    @Override
    public String toString() {
      return name;
    }
  }

  /** A shape with the default softmax scale. */
  public static AttentionShape shape(int hq, int hkv, int d, DType dtype) {
    return new AttentionShape(hq, hkv, d, dtype, AttentionShape.defaultScale(d));
  }

  private static final int LSE_LEAD_COLUMNS = 2;
  private static final int LSE_TAIL_COLUMNS = 3;

  public final AttentionShape shape;
  public final List<SliceSpec> specs;
  public final List<Tensor> k = new ArrayList<>();
  public final List<Tensor> v = new ArrayList<>();
  public final List<Tensor> dk = new ArrayList<>();
  public final List<Tensor> dv = new ArrayList<>();
  public final List<Tensor> q = new ArrayList<>();
  public final List<Tensor> o = new ArrayList<>();
  public final List<Tensor> dO = new ArrayList<>();
  public final List<Tensor> dq = new ArrayList<>();
  public final Tensor lse;
  /** The backward's delta = rowsum(dO * O), laid out as {@link #lse}; written by {@link #backwardBatch}. */
  public final Tensor delta;
  public final int[] lseColumn;
  private final BufferAllocator allocator;
  private boolean closed;

  public AttentionFixture(BufferAllocator parent, AttentionShape shape, int[] segmentLengths, List<SliceSpec> specs,
      long seed) {
    this.shape = shape;
    this.specs = List.copyOf(specs);
    this.allocator = parent.newChildAllocator("attention-fixture", 0, Long.MAX_VALUE);
    Random random = new Random(seed);
    DType dtype = shape.dtype();
    int hq = shape.headsQ();
    int hkv = shape.headsKv();
    int d = shape.headDim();
    for (int len : segmentLengths) {
      k.add(gaussian(random, 1.5, dtype, len, hkv, d));
      v.add(gaussian(random, 1.0, dtype, len, hkv, d));
      dk.add(nan(dtype, len, hkv, d));
      dv.add(nan(dtype, len, hkv, d));
    }
    lseColumn = new int[specs.size()];
    int column = LSE_LEAD_COLUMNS;
    for (int i = 0; i < specs.size(); i++) {
      SliceSpec s = specs.get(i);
      q.add(gaussian(random, 1.5, dtype, s.qLen(), hq, d));
      dO.add(gaussian(random, 1.0, dtype, s.qLen(), hq, d));
      o.add(nan(dtype, s.qLen(), hq, d));
      dq.add(nan(dtype, s.qLen(), hq, d));
      lseColumn[i] = column;
      column += s.qLen();
    }
    lse = nan(DType.FP32, hq, column + LSE_TAIL_COLUMNS);
    delta = nan(DType.FP32, hq, column + LSE_TAIL_COLUMNS);
  }

  public LseView lseView(int slice) {
    return new LseView(lse, lseColumn[slice]);
  }

  public AttentionBatch forwardBatch() {
    List<KvSegment> segments = new ArrayList<>();
    for (int i = 0; i < k.size(); i++) {
      segments.add(KvSegment.forward(k.get(i), v.get(i)));
    }
    List<QuerySlice> slices = new ArrayList<>();
    for (int i = 0; i < specs.size(); i++) {
      SliceSpec s = specs.get(i);
      slices.add(QuerySlice.forward(
          s.segment(), s.kvStart(), s.kvLen(), s.causal(), s.diagonal(), q.get(i), o.get(i), lseView(i)));
    }
    return new AttentionBatch(shape, segments, slices);
  }

  /**
   * O and LSE are inputs here: run a forward (any backend) first. Computes each slice's delta from
   * its O and dO as a trainer client does.
   */
  public AttentionBatch backwardBatch() {
    List<KvSegment> segments = new ArrayList<>();
    for (int i = 0; i < k.size(); i++) {
      segments.add(new KvSegment(k.get(i), v.get(i), dk.get(i), dv.get(i)));
    }
    List<QuerySlice> slices = new ArrayList<>();
    for (int i = 0; i < specs.size(); i++) {
      SliceSpec s = specs.get(i);
      AttentionDelta.computeInto(o.get(i), dO.get(i), delta, lseColumn[i]);
      slices.add(QuerySlice.backward(s.segment(), s.kvStart(), s.kvLen(), s.causal(), s.diagonal(),
          q.get(i), lseView(i), new LseView(delta, lseColumn[i]), dO.get(i), dq.get(i)));
    }
    return new AttentionBatch(shape, segments, slices);
  }

  /** Per slice, the LSE window widened to double, packed [heads_q, qLen] like the reference's. */
  public double[] lseOf(int slice) {
    return ReferenceAttention.rowStatistic(lseView(slice), shape.headsQ(), specs.get(slice).qLen());
  }

  /** The float64 reference forward of the fixture's inputs. */
  public ReferenceAttention.ForwardResult referenceForward() {
    return ReferenceAttention.forward(ReferenceAttention.DoubleBatch.of(forwardBatch()));
  }

  /** The float64 reference backward, with the O and LSE that the tensors hold now as inputs. */
  public ReferenceAttention.Gradients referenceGradients() {
    List<double[]> outputs = new ArrayList<>();
    List<double[]> lses = new ArrayList<>();
    List<double[]> upstream = new ArrayList<>();
    for (int i = 0; i < specs.size(); i++) {
      outputs.add(ReferenceAttention.toDoubles(o.get(i)));
      lses.add(lseOf(i));
      upstream.add(ReferenceAttention.toDoubles(dO.get(i)));
    }
    return ReferenceAttention.backward(ReferenceAttention.DoubleBatch.of(backwardBatch()), outputs, lses, upstream);
  }

  public void poisonOutputs() {
    for (List<Tensor> list : List.of(o, dq, dk, dv)) {
      for (Tensor t : list) {
        fill(t, Float.NaN);
      }
    }
    fill(lse, Float.NaN);
  }

  public void poisonGradients() {
    for (List<Tensor> list : List.of(dq, dk, dv)) {
      for (Tensor t : list) {
        fill(t, Float.NaN);
      }
    }
  }

  private Tensor gaussian(Random random, double sigma, DType dtype, int... dims) {
    Tensor t = Tensor.allocate(allocator, dtype, dims);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (sigma * random.nextGaussian()));
    }
    return t;
  }

  private Tensor nan(DType dtype, int... dims) {
    Tensor t = Tensor.allocate(allocator, dtype, dims);
    fill(t, Float.NaN);
    return t;
  }

  private static void fill(Tensor t, float value) {
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, value);
    }
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    for (List<Tensor> list : List.of(k, v, dk, dv, q, o, dO, dq)) {
      list.forEach(Tensor::close);
    }
    lse.close();
    delta.close();
    allocator.close();
  }
}
