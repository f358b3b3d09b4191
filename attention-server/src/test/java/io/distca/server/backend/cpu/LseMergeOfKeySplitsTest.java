package io.distca.server.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.OwnedTensors;
import io.distca.protocol.tensor.LseMerge;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Partial KV (DESIGN section 3): a causal query shard [qs, qe) of a document computed whole, and as
 * parts over disjoint key ranges merged by {@link LseMerge}, must agree. All runs are one CpuBackend
 * batch over one shared segment holding the document's K/V, with one Q.
 *
 * <p>Tolerance: fp32 runs agree to 2e-5 (fp32 rounding on both paths). bf16 runs round three
 * times, each by at most 2^-8 of the value rounded: every part's O before the merge (together up
 * to 2^-8 of {@code sum_i w_i |O_i|}, which exceeds 2^-8 of the merged value when parts cancel), the
 * merged O when it is written, and the whole O; plus the same fp32 floor.
 */
class LseMergeOfKeySplitsTest extends AllocatorPerTest {
  private static final int DOC = 260;
  private static final int QS = 120;
  private static final int QE = 260;
  private static final int Q_LEN = QE - QS;

  private OwnedTensors tensors;
  private AttentionShape shape;
  private Tensor k;
  private Tensor v;
  private Tensor q;

  @BeforeEach
  void open() {
    tensors = new OwnedTensors(allocator);
  }

  @AfterEach
  void close() {
    tensors.close(); // before AllocatorPerTest closes the allocator
  }

  /** Keys [kvStart, kvStart + kvLen) of the document, with the given mask, for the shard's rows. */
  private record KeyPart(int kvStart, int kvLen, boolean causal, int diagonal) {}

  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"FP32", "BF16"})
  void splitsMergeToTheWholeShard(DType dtype) {
    long seed = System.nanoTime();
    Random random = new Random(seed);
    shape = new AttentionShape(4, 2, 64, dtype, AttentionShape.defaultScale(64));
    k = gaussian(random, dtype, DOC, 2, 64);
    v = gaussian(random, dtype, DOC, 2, 64);
    q = gaussian(random, dtype, Q_LEN, 4, 64);
    // the shard's row i is document position QS + i; a part of keys starting at kvStart has
    // diagonal QS - kvStart (the document position of the first row minus that of the first key)
    KeyPart whole = new KeyPart(0, QE, true, QE - Q_LEN);
    List<List<KeyPart>> splits = List.of(
        List.of(new KeyPart(0, QS, false, 0), new KeyPart(QS, Q_LEN, true, 0)),
        List.of(new KeyPart(0, 50, false, 0), new KeyPart(50, QS - 50, false, 0), new KeyPart(QS, Q_LEN, true, 0)),
        // a cut inside the shard: rows 0..79 see nothing of the second part (LSE -inf there)
        List.of(new KeyPart(0, 200, true, QS), new KeyPart(200, 60, true, QS - 200)));

    List<KeyPart> all = new ArrayList<>();
    all.add(whole);
    splits.forEach(all::addAll);
    List<Tensor> outputs = new ArrayList<>();
    Tensor lse = tensors.allocate(DType.FP32, 4, all.size() * Q_LEN);
    List<QuerySlice> slices = new ArrayList<>();
    for (int i = 0; i < all.size(); i++) {
      KeyPart p = all.get(i);
      Tensor o = tensors.allocate(dtype, Q_LEN, 4, 64);
      outputs.add(o);
      slices.add(QuerySlice.forward(0, p.kvStart(), p.kvLen(), p.causal(), p.diagonal(), q, o,
          new LseView(lse, i * Q_LEN)));
    }
    try (CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(2).queryBlock(32).keyBlock(48))) {
      cpu.forward(new AttentionBatch(shape, List.of(KvSegment.forward(k, v)), slices));
    }

    double rel = dtype == DType.FP32 ? 0 : 0x1p-8;
    int first = 1;
    for (List<KeyPart> split : splits) {
      List<LseMerge.Part> parts = new ArrayList<>();
      for (int p = 0; p < split.size(); p++) {
        parts.add(new LseMerge.Part(outputs.get(first + p), lse, (first + p) * Q_LEN));
      }
      Tensor mergedO = tensors.allocate(dtype, Q_LEN, 4, 64);
      Tensor mergedLse = tensors.allocate(DType.FP32, 4, Q_LEN);
      LseMerge.merge(parts, LseMerge.Part.of(mergedO, mergedLse));
      String label = split.size() + "-way split " + split + " (seed " + seed + ")";
      for (int h = 0; h < 4; h++) {
        for (int row = 0; row < Q_LEN; row++) {
          assertEquals(lse.getFloat((long) h * lse.dim(1) + row), mergedLse.getFloat((long) h * Q_LEN + row), 2e-5,
              label + " LSE head " + h + " row " + row);
        }
      }
      Tensor wholeO = outputs.get(0);
      for (int e = 0; e < wholeO.numel(); e++) {
        int row = e / (4 * 64);
        int h = e / 64 % 4;
        double wholeLse = lse.getFloat((long) h * lse.dim(1) + row);
        double partsMagnitude = 0;
        for (LseMerge.Part p : parts) {
          double weight = Math.exp(p.lse().getFloat((long) h * lse.dim(1) + p.lseColumn() + row) - wholeLse);
          partsMagnitude += weight * Math.abs(p.o().getFloat(e));
        }
        float expected = wholeO.getFloat(e);
        float actual = mergedO.getFloat(e);
        assertEquals(expected, actual, rel * (partsMagnitude + Math.abs(actual) + Math.abs(expected)) + 2e-5,
            label + " O element " + e);
      }
      first += split.size();
    }
  }

  /** Rows that see no key in any part: the merge must give O = 0, LSE = -inf, like the whole would. */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"BF16"})
  void rowsThatSeeNoPartMergeToZero(DType dtype) {
    Random random = new Random(7);
    shape = new AttentionShape(2, 1, 16, dtype, 0.25f);
    k = gaussian(random, dtype, 40, 1, 16);
    v = gaussian(random, dtype, 40, 1, 16);
    q = gaussian(random, dtype, 10, 2, 16);
    Tensor lse = tensors.allocate(DType.FP32, 2, 20);
    Tensor o1 = tensors.allocate(dtype, 10, 2, 16);
    Tensor o2 = tensors.allocate(dtype, 10, 2, 16);
    // diagonals so negative that no row sees a key of either part
    List<QuerySlice> slices = List.of(
        QuerySlice.forward(0, 0, 20, true, -30, q, o1, new LseView(lse, 0)),
        QuerySlice.forward(0, 20, 20, true, -50, q, o2, new LseView(lse, 10)));
    try (CpuBackend cpu = new CpuBackend(new CpuBackendOptions().threads(2))) {
      cpu.forward(new AttentionBatch(shape, List.of(KvSegment.forward(k, v)), slices));
    }
    Tensor mergedO = tensors.allocate(dtype, 10, 2, 16);
    Tensor mergedLse = tensors.allocate(DType.FP32, 2, 10);
    for (int e = 0; e < mergedO.numel(); e++) {
      mergedO.setFloat(e, Float.NaN);
    }
    LseMerge.merge(List.of(new LseMerge.Part(o1, lse, 0), new LseMerge.Part(o2, lse, 10)),
        LseMerge.Part.of(mergedO, mergedLse));
    for (int i = 0; i < mergedLse.numel(); i++) {
      assertEquals(Float.NEGATIVE_INFINITY, mergedLse.getFloat(i));
    }
    for (int e = 0; e < mergedO.numel(); e++) {
      assertEquals(0f, mergedO.getFloat(e));
    }
    assertTrue(mergedO.numel() > 0);
  }

  private Tensor gaussian(Random random, DType dtype, int... dims) {
    Tensor t = tensors.allocate(dtype, dims);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (1.5 * random.nextGaussian()));
    }
    return t;
  }
}
