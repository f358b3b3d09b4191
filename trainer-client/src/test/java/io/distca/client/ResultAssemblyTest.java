package io.distca.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.AttentionDelta;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import io.distca.server.backend.ReferenceAttention;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The client's side of a step without the network: nano-batches built from tasks, answered by a
 * real backend running exactly what a server would run on the request, and assembled back. Covers
 * KV dedup, partial KV (keys of one query range split over tasks, merged by LSE), duplicate
 * results, and dK/dV summed over segments.
 */
class ResultAssemblyTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 16, DType.FP32, AttentionShape.defaultScale(16));

  @Test
  void tasksOfOneDocumentShareOneKvSegment() {
    NanoBatch nb = new NanoBatch(List.of(
        new ClientTask(0, 3, 0, 128, 0, 128, 0),
        new ClientTask(1, 3, 128, 300, 0, 300, 0),
        new ClientTask(2, 5, 0, 50, 0, 50, 0)));
    assertEquals(2, nb.segments.size());
    assertEquals(new NanoBatch.Segment(3, 0, 300), nb.segments.get(0));
    assertEquals(300 + 50, nb.kvTokens());
    AttentionRequest meta = nb.meta("j", 1, 0, 0, SHAPE, true);
    TaskSpec second = meta.tasks().get(1);
    assertEquals(0, second.kvSegment());
    assertEquals(300, second.kvLen());
    assertEquals(128, second.diagonal()); // query at document position 128 + i sees keys <= 128 + i
  }

  @Test
  void splitQueriesAndSplitKeysAssembleToTheWholeDocument() {
    int[] docs = {300, 90};
    // doc 0: queries [0,100) whole; queries [100,300) with keys split in three parts (partial KV),
    // sent in two nano-batches (as if on two servers); doc 1 whole. The first nano-batch is also
    // delivered twice (a retried request whose first answer arrived late).
    List<ClientTask> tasks = List.of(
        new ClientTask(0, 0, 0, 100, 0, 100, 0),
        new ClientTask(1, 0, 100, 300, 0, 60, 0),
        new ClientTask(2, 0, 100, 300, 60, 180, 1),
        new ClientTask(3, 0, 100, 300, 180, 300, 1),
        new ClientTask(4, 1, 0, 90, 0, 90, 1));
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention backend = new ReferenceAttention()) {
      for (boolean causal : new boolean[] {true, false}) {
        List<ClientTask> used = causal ? tasks : nonCausal(tasks, docs);
        MicroBatch mb = randomBatch(root, docs, causal);
        Tensor[] expected = wholeForward(backend, mb, root);
        int[] cu = mb.cuSeqlens();
        NanoBatch a = new NanoBatch(used.subList(0, 2));
        NanoBatch b = new NanoBatch(used.subList(2, 5));
        java.util.concurrent.atomic.AtomicLong dropped = new java.util.concurrent.atomic.AtomicLong();
        try (ResultAssembler asm = new ResultAssembler(SHAPE, false, used, cu, root, dropped)) {
          serveForward(backend, a, List.of(0, 1), mb, cu, asm, root, causal);
          serveForward(backend, b, List.of(2, 3, 4), mb, cu, asm, root, causal);
          serveForward(backend, a, List.of(0, 1), mb, cu, asm, root, causal); // duplicate: dropped
          assertTrue(asm.complete());
          assertEquals(2, dropped.get(), "both tasks of the repeated nano-batch are dropped");
          try (ForwardResult r = asm.finishForward(null)) {
            assertClose(expected[0], r.o(), 1e-5, "O causal=" + causal);
            assertClose(expected[1], r.lse(), 1e-5, "LSE causal=" + causal);
          }
        } finally {
          for (Tensor t : expected) {
            t.close();
          }
          close(mb);
        }
      }
    }
  }

  private static List<ClientTask> nonCausal(List<ClientTask> tasks, int[] docs) {
    // without a mask every query of doc 0 sees all 300 keys: split the keys of [100, 300) likewise
    return List.of(
        new ClientTask(0, 0, 0, 100, 0, 300, 0),
        new ClientTask(1, 0, 100, 300, 0, 60, 0),
        new ClientTask(2, 0, 100, 300, 60, 180, 1),
        new ClientTask(3, 0, 100, 300, 180, 300, 1),
        new ClientTask(4, 1, 0, 90, 0, docs[1], 1));
  }

  @Test
  void backwardSumsKeyGradientsOverSegments() {
    int[] docs = {260};
    // two query shards of one document on two servers: K/V rows [0,100) are read by both
    List<ClientTask> tasks = List.of(new ClientTask(0, 0, 0, 100, 0, 100, 0), new ClientTask(1, 0, 100, 260, 0, 260, 1));
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention backend = new ReferenceAttention()) {
      MicroBatch mb = randomBatch(root, docs, true);
      Tensor[] fwd = wholeForward(backend, mb, root);
      Tensor dO = random(root, new SplittableRandom(9), 260, SHAPE.headsQ());
      BackwardInput in = new BackwardInput(mb, fwd[0], fwd[1], dO);
      Tensor[] expected = wholeBackward(backend, in, root);
      int[] cu = mb.cuSeqlens();
      try (ResultAssembler asm = new ResultAssembler(SHAPE, true, tasks, cu, root)) {
        serveBackward(backend, new NanoBatch(tasks.subList(0, 1)), List.of(0), in, cu, asm, root);
        serveBackward(backend, new NanoBatch(tasks.subList(1, 2)), List.of(1), in, cu, asm, root);
        try (BackwardResult r = asm.finishBackward(null)) {
          assertClose(expected[0], r.dq(), 1e-5, "dQ");
          assertClose(expected[1], r.dk(), 1e-5, "dK");
          assertClose(expected[2], r.dv(), 1e-5, "dV");
        }
      } finally {
        for (Tensor t : expected) {
          t.close();
        }
        fwd[0].close();
        fwd[1].close();
        dO.close();
        close(mb);
      }
    }
  }

  /** What a server does with a request, minus the network: request tensors in, response tensors out. */
  private static void serveForward(ReferenceAttention backend, NanoBatch nb, List<Integer> idx, MicroBatch mb, int[] cu,
      ResultAssembler asm, BufferAllocator root, boolean causal) {
    AttentionRequest meta = nb.meta("j", 0, 0, 0, SHAPE, causal);
    try (Message req = nb.build(MessageType.FORWARD_REQUEST, meta, mb, cu, null, root);
        TensorSet out = run(backend, meta, req.tensors(), false, root)) {
      asm.acceptForward(nb, idx, out.get("o"), out.get("lse"));
    }
  }

  private static void serveBackward(ReferenceAttention backend, NanoBatch nb, List<Integer> idx, BackwardInput in, int[] cu,
      ResultAssembler asm, BufferAllocator root) {
    AttentionRequest meta = nb.meta("j", 0, 0, 0, SHAPE, true);
    try (Message req = nb.build(MessageType.BACKWARD_REQUEST, meta, in.batch(), cu, in, root);
        TensorSet out = run(backend, meta, req.tensors(), true, root)) {
      asm.acceptBackward(nb, idx, out.get("dq"), out.get("dk"), out.get("dv"));
    }
  }

  private static TensorSet run(ReferenceAttention backend, AttentionRequest meta, TensorSet in, boolean backward,
      BufferAllocator root) {
    int tq = in.get("q").dim(0);
    int tk = in.get("k").dim(0);
    TensorSet out = new TensorSet();
    List<KvSegment> segs = new ArrayList<>();
    int row = 0;
    Tensor dk = backward ? out.putNew("dk", root, DType.FP32, tk, SHAPE.headsKv(), SHAPE.headDim()) : null;
    Tensor dv = backward ? out.putNew("dv", root, DType.FP32, tk, SHAPE.headsKv(), SHAPE.headDim()) : null;
    for (int len : meta.kvSegmentLens()) {
      segs.add(new KvSegment(in.get("k").sliceRows(row, row + len), in.get("v").sliceRows(row, row + len),
          backward ? dk.sliceRows(row, row + len) : null, backward ? dv.sliceRows(row, row + len) : null));
      row += len;
    }
    Tensor o = backward ? null : out.putNew("o", root, DType.FP32, tq, SHAPE.headsQ(), SHAPE.headDim());
    Tensor lse = backward ? null : out.putNew("lse", root, DType.FP32, SHAPE.headsQ(), tq);
    Tensor dq = backward ? out.putNew("dq", root, DType.FP32, tq, SHAPE.headsQ(), SHAPE.headDim()) : null;
    List<QuerySlice> slices = new ArrayList<>();
    row = 0;
    for (TaskSpec t : meta.tasks()) {
      int end = row + t.qLen();
      Tensor q = in.get("q").sliceRows(row, end);
      slices.add(backward
          ? QuerySlice.backward(t.kvSegment(), t.kvStart(), t.kvLen(), t.causal(), t.diagonal(), q,
              new LseView(in.get("lse"), row), new LseView(in.get("delta"), row), in.get("do").sliceRows(row, end),
              dq.sliceRows(row, end))
          : QuerySlice.forward(t.kvSegment(), t.kvStart(), t.kvLen(), t.causal(), t.diagonal(), q,
              o.sliceRows(row, end), new LseView(lse, row)));
      row = end;
    }
    AttentionBatch batch = new AttentionBatch(SHAPE, segs, slices);
    if (backward) {
      backend.backward(batch);
    } else {
      backend.forward(batch);
    }
    return out;
  }

  private static Tensor[] wholeForward(ReferenceAttention backend, MicroBatch mb, BufferAllocator root) {
    Tensor o = Tensor.allocate(root, DType.FP32, mb.tokens(), SHAPE.headsQ(), SHAPE.headDim());
    Tensor lse = Tensor.allocate(root, DType.FP32, SHAPE.headsQ(), mb.tokens());
    int[] cu = mb.cuSeqlens();
    List<KvSegment> segs = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    for (int d = 0; d < mb.docLengths().length; d++) {
      segs.add(KvSegment.forward(mb.k().sliceRows(cu[d], cu[d + 1]), mb.v().sliceRows(cu[d], cu[d + 1])));
      slices.add(QuerySlice.forward(d, 0, mb.docLengths()[d], mb.causal(), 0, mb.q().sliceRows(cu[d], cu[d + 1]),
          o.sliceRows(cu[d], cu[d + 1]), new LseView(lse, cu[d])));
    }
    backend.forward(new AttentionBatch(SHAPE, segs, slices));
    return new Tensor[] {o, lse};
  }

  private static Tensor[] wholeBackward(ReferenceAttention backend, BackwardInput in, BufferAllocator root) {
    MicroBatch mb = in.batch();
    Tensor dq = Tensor.allocate(root, DType.FP32, mb.tokens(), SHAPE.headsQ(), SHAPE.headDim());
    Tensor dk = Tensor.allocate(root, DType.FP32, mb.tokens(), SHAPE.headsKv(), SHAPE.headDim());
    Tensor dv = Tensor.allocate(root, DType.FP32, mb.tokens(), SHAPE.headsKv(), SHAPE.headDim());
    int[] cu = mb.cuSeqlens();
    List<KvSegment> segs = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    try (Tensor delta = AttentionDelta.of(root, in.o(), in.dO())) {
      for (int d = 0; d < mb.docLengths().length; d++) {
        segs.add(new KvSegment(mb.k().sliceRows(cu[d], cu[d + 1]), mb.v().sliceRows(cu[d], cu[d + 1]),
            dk.sliceRows(cu[d], cu[d + 1]), dv.sliceRows(cu[d], cu[d + 1])));
        slices.add(QuerySlice.backward(d, 0, mb.docLengths()[d], mb.causal(), 0, mb.q().sliceRows(cu[d], cu[d + 1]),
            new LseView(in.lse(), cu[d]), new LseView(delta, cu[d]), in.dO().sliceRows(cu[d], cu[d + 1]),
            dq.sliceRows(cu[d], cu[d + 1])));
      }
      backend.backward(new AttentionBatch(SHAPE, segs, slices));
    }
    return new Tensor[] {dq, dk, dv};
  }

  private static MicroBatch randomBatch(BufferAllocator root, int[] docs, boolean causal) {
    int t = 0;
    for (int d : docs) {
      t += d;
    }
    SplittableRandom rnd = new SplittableRandom(11);
    return new MicroBatch(SHAPE, causal, docs, random(root, rnd, t, SHAPE.headsQ()), random(root, rnd, t, SHAPE.headsKv()),
        random(root, rnd, t, SHAPE.headsKv()));
  }

  private static Tensor random(BufferAllocator root, SplittableRandom rnd, int tokens, int heads) {
    Tensor t = Tensor.allocate(root, DType.FP32, tokens, heads, SHAPE.headDim());
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }

  private static void close(MicroBatch mb) {
    mb.q().close();
    mb.k().close();
    mb.v().close();
  }

  private static void assertClose(Tensor expected, Tensor actual, double tol, String what) {
    assertEquals(expected.numel(), actual.numel(), what);
    for (long i = 0; i < expected.numel(); i++) {
      float e = expected.getFloat(i);
      float a = actual.getFloat(i);
      if (e == a) {
        continue;
      }
      assertTrue(Math.abs(e - a) <= tol * (1 + Math.abs(e)), what + " element " + i + ": expected " + e + ", got " + a);
    }
  }
}
