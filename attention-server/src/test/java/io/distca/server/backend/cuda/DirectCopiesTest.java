package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The direct path without a GPU: a host buffer plays the device arena, memcpy plays the DMA engine.
 * A batch whose tensors lie partly in pool memory is moved once through plain gather/upload and
 * download/scatter and once through {@link DirectCopies} (direct pieces from and to the tensors,
 * staged pieces through staging, in chunks as the backend does); the device image and the outputs
 * must be identical byte for byte, and exactly the pinned tensors must have gone direct.
 */
class DirectCopiesTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 64, DType.BF16, 0.125f);
  /** q row = 4 * 64 * 2 = 512 bytes: slices of 8 rows or more go direct, LSE runs (4 bytes per row) do not. */
  private static final long MIN_BYTES = 4096;
  private static final int[] SEGMENTS = {300, 200};
  /** (segment, q rows): the request's q rows in this order, each slice bottom-right causal over its segment. */
  private static final int[][] SLICES = {{0, 100}, {0, 50}, {1, 2}, {1, 200}};

  private final HostMemory memory = new HostMemory(Long.MAX_VALUE);
  private PinnedBufferPool pool;
  private PinnedBuffers pinned;
  private BufferAllocator allocator;
  private final List<Tensor> owned = new ArrayList<>();

  @BeforeEach
  void open() {
    pool = new PinnedBufferPool("test", memory, 1L << 30, null);
    pinned = new PinnedBuffers(pool);
    allocator = new RootAllocator();
  }

  @AfterEach
  void close() {
    owned.forEach(Tensor::close);
    assertEquals(0, pool.leased(), "every pinned tensor went back to the pool");
    allocator.close();
    pool.close();
    assertEquals(0, memory.liveBytes.get());
  }

  private Tensor tensor(boolean inPool, DType dtype, int... shape) {
    Tensor t = inPool ? pinned.allocateTensor(allocator, dtype, shape) : Tensor.allocateUninitialized(allocator, dtype, shape);
    assertTrue(t != null && pool.contains(t.address(), t.byteSize()) == inPool);
    owned.add(t);
    return t;
  }

  private record Batch(AttentionBatch batch, List<Tensor> inputs, List<Tensor> outputs, long pinnedInputBytes,
      long pinnedOutputBytes) {}

  /** One request's tensors: those named in {@code inPool} in pool memory, the rest in ordinary memory. */
  private Batch batch(boolean backward, Set<String> inPool, Random random) {
    int tq = 0;
    for (int[] s : SLICES) {
      tq += s[1];
    }
    int tk = SEGMENTS[0] + SEGMENTS[1];
    int hq = SHAPE.headsQ();
    int hkv = SHAPE.headsKv();
    int d = SHAPE.headDim();
    Tensor q = tensor(inPool.contains("q"), DType.BF16, tq, hq, d);
    Tensor k = tensor(inPool.contains("k"), DType.BF16, tk, hkv, d);
    Tensor v = tensor(inPool.contains("v"), DType.BF16, tk, hkv, d);
    Tensor o = tensor(inPool.contains("o"), DType.BF16, tq, hq, d);
    Tensor lse = tensor(inPool.contains("lse"), DType.FP32, hq, tq);
    List<Tensor> inputs = new ArrayList<>(List.of(q, k, v));
    List<Tensor> outputs = new ArrayList<>();
    Tensor dO = null;
    Tensor delta = null;
    Tensor dq = null;
    Tensor dk = null;
    Tensor dv = null;
    if (backward) {
      dO = tensor(inPool.contains("do"), DType.BF16, tq, hq, d);
      delta = tensor(inPool.contains("delta"), DType.FP32, hq, tq);
      dq = tensor(inPool.contains("dq"), DType.BF16, tq, hq, d);
      dk = tensor(inPool.contains("dk"), DType.BF16, tk, hkv, d);
      dv = tensor(inPool.contains("dv"), DType.BF16, tk, hkv, d);
      inputs.addAll(List.of(lse, delta, dO));
      outputs.addAll(List.of(dq, dk, dv));
    } else {
      outputs.addAll(List.of(o, lse));
    }
    for (Tensor t : inputs) {
      fill(t, random);
    }
    List<KvSegment> segments = new ArrayList<>();
    int row = 0;
    for (int len : SEGMENTS) {
      segments.add(backward
          ? new KvSegment(k.sliceRows(row, row + len), v.sliceRows(row, row + len), dk.sliceRows(row, row + len),
              dv.sliceRows(row, row + len))
          : KvSegment.forward(k.sliceRows(row, row + len), v.sliceRows(row, row + len)));
      row += len;
    }
    List<QuerySlice> slices = new ArrayList<>();
    row = 0;
    for (int[] s : SLICES) {
      int kv = SEGMENTS[s[0]];
      int end = row + s[1];
      slices.add(backward
          ? QuerySlice.backward(s[0], 0, kv, true, kv - s[1], q.sliceRows(row, end), new LseView(lse, row),
              new LseView(delta, row), dO.sliceRows(row, end), dq.sliceRows(row, end))
          : QuerySlice.forward(s[0], 0, kv, true, kv - s[1], q.sliceRows(row, end), o.sliceRows(row, end),
              new LseView(lse, row)));
      row = end;
    }
    // What must go direct: whole pinned tensors, except runs under the minimum (the 2-row slice's q, o,
    // dO and dq rows; every LSE and delta run of 4 bytes per row).
    long smallRows = 2L * hq * d * 2;
    long pinnedIn = 0;
    for (String name : backward ? List.of("q", "k", "v", "do") : List.of("q", "k", "v")) {
      if (inPool.contains(name)) {
        Tensor t = name.equals("q") ? q : name.equals("k") ? k : name.equals("v") ? v : dO;
        pinnedIn += t.byteSize() - (name.equals("k") || name.equals("v") ? 0 : smallRows);
      }
    }
    long pinnedOut = 0;
    if (backward) {
      pinnedOut += inPool.contains("dq") ? dq.byteSize() - smallRows : 0;
      pinnedOut += inPool.contains("dk") ? dk.byteSize() : 0;
      pinnedOut += inPool.contains("dv") ? dv.byteSize() : 0;
    } else {
      pinnedOut += inPool.contains("o") ? o.byteSize() - smallRows : 0;
    }
    return new Batch(new AttentionBatch(SHAPE, segments, slices), inputs, outputs, pinnedIn, pinnedOut);
  }

  private static void fill(Tensor t, Random random) {
    byte[] bytes = new byte[(int) t.byteSize()];
    random.nextBytes(bytes);
    t.buffer().setBytes(t.byteOffset(), bytes);
  }

  private static byte[] bytes(Tensor t) {
    byte[] b = new byte[(int) t.byteSize()];
    t.buffer().getBytes(t.byteOffset(), b);
    return b;
  }

  private static byte[] bytes(long address, long length) {
    byte[] b = new byte[(int) length];
    for (int i = 0; i < length; i++) {
      b[i] = MemoryUtil.getByte(address + i);
    }
    return b;
  }

  private static long zeroed(long bytes) {
    long a = MemoryUtil.allocateMemory(bytes);
    MemoryUtil.setMemory(a, bytes, (byte) 0);
    return a;
  }

  @ParameterizedTest(name = "backward {0}")
  @ValueSource(booleans = {false, true})
  void theDirectPathMovesTheSameBytesAsTheStagedPath(boolean backward) {
    Set<String> inPool = Set.of("q", "v", "o", "do", "dq", "dv"); // k, lse and dk stay in ordinary memory
    Batch b = batch(backward, inPool, new Random(backward ? 2 : 1));
    FusedBatchPlan plan = backward
        ? FusedBatchPlan.backward(b.batch(), FusedBatchPlanTest.GEOMETRY)
        : FusedBatchPlan.forward(b.batch(), FusedBatchPlanTest.GEOMETRY);
    FusedBatchPlan.Layout at = plan.layout;
    long staging = zeroed(at.pinnedBytes());
    long device = zeroed(at.pinnedBytes());
    long plainImage = zeroed(at.inputBytes());
    try (ParallelCopier copier = new ParallelCopier(1)) {
      // Plain: gather everything, upload the whole input block.
      CopyList copies = new CopyList();
      StagingCopies.writeDescriptors(plan, staging);
      StagingCopies.gather(plan, b.batch(), staging, copies);
      copier.run(copies);
      MemoryUtil.copyMemory(staging, plainImage, at.inputBytes());
      byte[] expectedImage = bytes(plainImage, at.inputBytes());

      // Direct: a fresh zeroed staging block, gather only what the direct list refuses, then the upload
      // in chunks: direct pieces from the tensors, staged pieces from staging.
      MemoryUtil.setMemory(staging, at.pinnedBytes(), (byte) 0);
      StagingCopies.writeDescriptors(plan, staging);
      CopyList rest = new CopyList();
      DirectCopies in = new DirectCopies(pool::contains, MIN_BYTES);
      StagingCopies.gather(plan, b.batch(), staging, rest, in);
      copier.run(rest);
      assertEquals(b.pinnedInputBytes(), in.totalBytes(), "exactly the pinned runs over the minimum go direct");
      assertEquals(copies.totalBytes(), rest.totalBytes() + in.totalBytes());
      for (long from = 0; from < at.inputBytes(); from += 7777) {
        in.split(from, Math.min(at.inputBytes(), from + 7777),
            (offset, host, n) -> MemoryUtil.copyMemory(host, device + offset, n),
            (offset, n) -> MemoryUtil.copyMemory(staging + offset, device + offset, n));
      }
      assertArrayEquals(expectedImage, bytes(device, at.inputBytes()), "the device sees the same inputs");

      // The kernels' outputs: random bytes in the device's output block.
      byte[] results = new byte[(int) at.outputBytes()];
      new Random(3).nextBytes(results);
      for (int i = 0; i < results.length; i++) {
        MemoryUtil.putByte(device + at.outputStart() + i, results[i]);
      }
      // Plain: download the whole block into staging, scatter.
      MemoryUtil.copyMemory(device + at.outputStart(), staging + at.outputStart(), at.outputBytes());
      CopyList scatter = new CopyList();
      StagingCopies.scatter(plan, b.batch(), staging, scatter);
      copier.run(scatter);
      List<byte[]> expected = new ArrayList<>();
      for (Tensor t : b.outputs()) {
        expected.add(bytes(t));
        MemoryUtil.setMemory(t.address(), t.byteSize(), (byte) 0x7f); // poison before the second pass
      }
      MemoryUtil.setMemory(staging + at.outputStart(), at.outputBytes(), (byte) 0);

      // Direct: each chunk's direct pieces into the tensors, staged pieces into staging, then scatter the rest.
      DirectCopies out = new DirectCopies(pool::contains, MIN_BYTES);
      CopyList scatterRest = new CopyList();
      StagingCopies.scatter(plan, b.batch(), staging, scatterRest, out);
      assertEquals(b.pinnedOutputBytes(), out.totalBytes());
      long end = at.outputStart() + at.outputBytes();
      for (long from = at.outputStart(); from < end; from += 5003) {
        out.split(from, Math.min(end, from + 5003),
            (offset, host, n) -> MemoryUtil.copyMemory(device + offset, host, n),
            (offset, n) -> MemoryUtil.copyMemory(device + offset, staging + offset, n));
      }
      copier.run(scatterRest);
      for (int i = 0; i < expected.size(); i++) {
        assertArrayEquals(expected.get(i), bytes(b.outputs().get(i)), "output " + i + " is the same, every byte written");
      }
    } finally {
      MemoryUtil.freeMemory(staging);
      MemoryUtil.freeMemory(device);
      MemoryUtil.freeMemory(plainImage);
    }
  }

  @ParameterizedTest(name = "backward {0}")
  @ValueSource(booleans = {false, true})
  void oneCopyPerPinnedTensorOfARequest(boolean backward) {
    Batch b = batch(backward, Set.of("q", "k", "v", "o", "do", "dq", "dk", "dv"), new Random(4));
    FusedBatchPlan plan = backward
        ? FusedBatchPlan.backward(b.batch(), FusedBatchPlanTest.GEOMETRY)
        : FusedBatchPlan.forward(b.batch(), FusedBatchPlanTest.GEOMETRY);
    DirectCopies in = new DirectCopies(pool::contains, 1);
    StagingCopies.gather(plan, b.batch(), 0, new CopyList(), in);
    // Consecutive slices and segments of one request tensor merge; the LSE and delta (strided per head)
    // are not pinned.
    assertEquals(backward ? 4 : 3, in.size(), "q, k, v (and dO): one copy each");
    DirectCopies out = new DirectCopies(pool::contains, 1);
    CopyList lse = new CopyList();
    StagingCopies.scatter(plan, b.batch(), 0, lse, out);
    assertEquals(backward ? 3 : 1, out.size(), backward ? "dq, dk, dv" : "o");
    assertEquals(backward ? 0 : 4L * SHAPE.headsQ() * 352, lse.totalBytes(), "only the LSE is scattered");
  }

  @org.junit.jupiter.api.Test
  void splitCutsARangeIntoDirectPiecesAndStagedGaps() {
    DirectCopies d = new DirectCopies((a, n) -> true, 1);
    assertTrue(d.offer(1000, 10, 20)); // arena [10, 30)
    assertTrue(d.offer(1020, 30, 5)); // continues in both: merged into [10, 35)
    assertTrue(d.offer(5000, 50, 10)); // [50, 60)
    assertEquals(2, d.size());
    assertEquals(35, d.totalBytes());
    List<String> pieces = new ArrayList<>();
    d.split(0, 100, (o, h, n) -> pieces.add("D" + o + "@" + h + "+" + n), (o, n) -> pieces.add("S" + o + "+" + n));
    assertEquals(List.of("S0+10", "D10@1000+25", "S35+15", "D50@5000+10", "S60+40"), pieces);
    pieces.clear();
    d.split(20, 55, (o, h, n) -> pieces.add("D" + o + "@" + h + "+" + n), (o, n) -> pieces.add("S" + o + "+" + n));
    assertEquals(List.of("D20@1010+15", "S35+15", "D50@5000+5"), pieces);
    assertThrows(IllegalArgumentException.class, () -> d.offer(9000, 55, 10), "out of arena order");

    DirectCopies refusing = new DirectCopies((a, n) -> n <= 8, 4);
    assertFalse(refusing.offer(0, 0, 3), "under the minimum");
    assertFalse(refusing.offer(0, 0, 9), "not inside a pinned buffer");
    assertTrue(refusing.offer(100, 0, 8));
    assertTrue(refusing.offer(108, 8, 8));
    assertEquals(2, refusing.size(), "not merged: the merged run would leave the pinned buffer");
  }
}
