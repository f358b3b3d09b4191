package io.distca.loadtest.bench;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.OwnedTensors;
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
 * A packed varlen batch with random inputs, its outputs, and the forward and backward
 * {@link AttentionBatch}es over them: what the kernel benchmarks time. Documents give the K/V rows;
 * shards (CA-tasks) give the query rows: query rows {@code [qs, qe)} of a document with its K/V
 * prefix {@code [0, qe)} when causal (bottom-right aligned), all of it when not. A batch of whole
 * documents has one shard per document.
 */
final class BenchBatch implements AutoCloseable {
  /** Query rows {@code [qs, qe)} of document {@code doc}. */
  record Shard(int doc, int qs, int qe) {
    int rows() {
      return qe - qs;
    }

    /** Causal (query, key) pairs with the K/V prefix [0, qe): (qe^2 - qs^2) / 2, so a document's shards sum to its own. */
    double causalPairs() {
      return ((double) qe * qe - (double) qs * qs) / 2;
    }
  }

  final AttentionShape shape;
  final boolean causal;
  final int[] lengths;
  final List<Shard> shards;
  /** Query rows (the shards' rows summed). */
  final int tokens;
  /** Key rows (the documents' lengths summed). */
  final int kvTokens;
  private final OwnedTensors tensors;
  final Tensor q;
  final Tensor k;
  final Tensor v;
  final Tensor o;
  final Tensor lse;
  /** The backward's delta = rowsum(dO * O), [heads_q, tokens]: written by {@link #backward()}. */
  final Tensor delta;
  final Tensor dO;
  final Tensor dq;
  final Tensor dk;
  final Tensor dv;

  /** Whole documents. */
  BenchBatch(BufferAllocator allocator, AttentionShape shape, boolean causal, int[] lengths, long seed) {
    this(allocator, shape, causal, lengths, wholeDocuments(lengths), seed);
  }

  BenchBatch(BufferAllocator allocator, AttentionShape shape, boolean causal, int[] lengths, List<Shard> shards,
      long seed) {
    this.tensors = new OwnedTensors(allocator);
    this.shape = shape;
    this.causal = causal;
    this.lengths = lengths.clone();
    this.shards = List.copyOf(shards);
    int kv = 0;
    for (int len : lengths) {
      kv += len;
    }
    int t = 0;
    for (Shard shard : shards) {
      if (shard.qs() < 0 || shard.qs() >= shard.qe() || shard.qe() > lengths[shard.doc()]) {
        throw new IllegalArgumentException("shard " + shard + " outside its document of " + lengths[shard.doc()]);
      }
      t += shard.rows();
    }
    this.tokens = t;
    this.kvTokens = kv;
    SplittableRandom rnd = new SplittableRandom(seed);
    q = random(rnd, t, shape.headsQ());
    k = random(rnd, kv, shape.headsKv());
    v = random(rnd, kv, shape.headsKv());
    dO = random(rnd, t, shape.headsQ());
    o = tensors.allocate(shape.dtype(), t, shape.headsQ(), shape.headDim());
    lse = tensors.allocate(DType.FP32, shape.headsQ(), t);
    delta = tensors.allocate(DType.FP32, shape.headsQ(), t);
    dq = tensors.allocate(shape.dtype(), t, shape.headsQ(), shape.headDim());
    dk = tensors.allocate(shape.dtype(), kv, shape.headsKv(), shape.headDim());
    dv = tensors.allocate(shape.dtype(), kv, shape.headsKv(), shape.headDim());
  }

  static List<Shard> wholeDocuments(int[] lengths) {
    List<Shard> shards = new ArrayList<>();
    for (int d = 0; d < lengths.length; d++) {
      if (lengths[d] > 0) {
        shards.add(new Shard(d, 0, lengths[d]));
      }
    }
    return shards;
  }

  /** Uniform values in [-1, 1), written as raw 16-bit patterns (fast enough for 10^8 elements). */
  private Tensor random(SplittableRandom rnd, int rows, int heads) {
    Tensor t = tensors.allocate(shape.dtype(), rows, heads, shape.headDim());
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
    return batch(false);
  }

  /** The backward over the batch's O as it is now (run a forward first), with delta computed from it. */
  AttentionBatch backward() {
    AttentionDelta.computeInto(o, dO, delta, 0);
    return batch(true);
  }

  private AttentionBatch batch(boolean backward) {
    List<KvSegment> segments = new ArrayList<>();
    int[] kvRow = new int[lengths.length];
    int row = 0;
    for (int d = 0; d < lengths.length; d++) {
      kvRow[d] = row;
      int end = row + lengths[d];
      segments.add(backward
          ? new KvSegment(k.sliceRows(row, end), v.sliceRows(row, end), dk.sliceRows(row, end), dv.sliceRows(row, end))
          : KvSegment.forward(k.sliceRows(row, end), v.sliceRows(row, end)));
      row = end;
    }
    List<QuerySlice> slices = new ArrayList<>();
    row = 0;
    for (Shard shard : shards) {
      int end = row + shard.rows();
      int kvLen = causal ? shard.qe() : lengths[shard.doc()];
      int diagonal = kvLen - shard.rows(); // bottom-right: row i is document position qs + i
      LseView lseView = new LseView(lse, row);
      slices.add(backward
          ? QuerySlice.backward(shard.doc(), 0, kvLen, causal, diagonal, q.sliceRows(row, end), lseView,
              new LseView(delta, row), dO.sliceRows(row, end), dq.sliceRows(row, end))
          : QuerySlice.forward(shard.doc(), 0, kvLen, causal, diagonal, q.sliceRows(row, end), o.sliceRows(row, end),
              lseView));
      row = end;
    }
    return new AttentionBatch(shape, segments, slices);
  }

  /**
   * Forward FLOPs by FlashAttention's benchmark convention: 4 * s^2 * h * d per document, halved
   * when causal (so causal and full runs of one kernel compare directly); a causal shard
   * {@code [qs, qe)} counts {@code (qe^2 - qs^2) / 2} pairs, so a document's shards sum to it.
   */
  double forwardFlopsFaConvention() {
    double pairs = 0;
    for (Shard shard : shards) {
      pairs += causal ? shard.causalPairs() : (double) shard.rows() * lengths[shard.doc()];
    }
    return 4.0 * pairs * shape.headsQ() * shape.headDim();
  }

  @Override
  public void close() {
    tensors.close();
  }
}
