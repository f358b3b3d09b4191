package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.Case;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.PinnedTransfers;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The direct path on a real GPU: the same batch once with every tensor in ordinary memory (gather,
 * upload, download, scatter) and once with its tensors copied into the backend's pinned pool (all of
 * them, or some: a mix of direct and staged copies in one batch). Outputs must be identical bit for
 * bit (dQ, which the backward kernel accumulates with float atomics, within the run-to-run spread of
 * the plain path), and the pinned-path counters must show that the direct copies actually ran.
 * Skipped where {@link CudaAvailability} finds no usable GPU and kernels.
 */
@Tag("gpu")
class PinnedDirectPathGpuTest extends AllocatorPerTest {
  private static CudaBackend backend;
  private static final long SEED = System.nanoTime();

  @BeforeAll
  static void openBackend() {
    // Minimum 1 byte: every pinned run goes direct, LSE runs included, so the counters are exact.
    // no group splits: dK and dV are compared bit for bit, which their fp32 sums in a varying order
    // (distca_attn.h section 9) would not be
    backend = GpuTests.openOrSkip(new CudaBackendOptions().directTransferMinBytes(1).groupSplits(false));
    System.out.println("CUDA backend on " + backend.gpu() + ", seed " + SEED);
  }

  @AfterAll
  static void closeBackend() {
    if (backend != null) {
      backend.close();
      assertEquals(0, backend.pinnedBuffersLeakedAtClose(), "every pinned buffer came back before close");
    }
  }

  static Stream<Arguments> cases() {
    List<Arguments> all = new ArrayList<>();
    for (Case c : CudaBackendGpuTest.cases()) {
      all.add(Arguments.of(c, true));
      all.add(Arguments.of(c, false));
    }
    return all.stream();
  }

  /** Pinned copies of a batch's tensors (outputs with their NaN poison), closed together. */
  private final class PinnedCopies implements AutoCloseable {
    private final Map<Tensor, Tensor> copies = new IdentityHashMap<>();
    private final boolean all;
    long inputBytes;
    long outputBytes;

    PinnedCopies(boolean all) {
      this.all = all;
    }

    /** The pinned copy of {@code t}, or {@code t} itself when this mix leaves tensors of that role in place. */
    Tensor of(Tensor t, boolean pinThisRole, boolean output, long directBytes) {
      if (t == null || !(all || pinThisRole)) {
        return t;
      }
      Tensor copy = copies.get(t);
      if (copy == null) {
        copy = backend.allocatePinned(allocator, t.dtype(), t.shape());
        assertNotNull(copy, "the pool serves " + t);
        if (output) {
          // All-ones bits are NaN in bf16, fp16 and fp32: an element the backend forgets stays NaN.
          MemoryUtil.setMemory(copy.address(), copy.byteSize(), (byte) 0xff);
        } else {
          copy.copyFrom(t);
        }
        copies.put(t, copy);
      }
      if (output) {
        outputBytes += directBytes;
      } else {
        inputBytes += directBytes;
      }
      return copy;
    }

    AttentionBatch of(AttentionBatch batch, boolean backward) {
      List<KvSegment> segments = new ArrayList<>();
      for (KvSegment s : batch.segments()) {
        segments.add(new KvSegment(of(s.k(), false, false, s.k().byteSize()), of(s.v(), true, false, s.v().byteSize()),
            backward ? of(s.dk(), true, true, s.dk().byteSize()) : null,
            backward ? of(s.dv(), false, true, s.dv().byteSize()) : null));
      }
      List<QuerySlice> slices = new ArrayList<>();
      for (QuerySlice s : batch.slices()) {
        long lseBytes = 4L * s.qLen() * batch.shape().headsQ();
        Tensor q = of(s.q(), true, false, s.q().byteSize());
        Tensor o = backward ? null : of(s.o(), true, true, s.o().byteSize());
        LseView lse = new LseView(of(s.lse().lse(), false, !backward, lseBytes), s.lse().column());
        LseView delta = backward ? new LseView(of(s.delta().lse(), false, false, lseBytes), s.delta().column()) : null;
        Tensor dO = backward ? of(s.dO(), true, false, s.dO().byteSize()) : null;
        Tensor dq = backward ? of(s.dq(), true, true, s.dq().byteSize()) : null;
        slices.add(new QuerySlice(s.segment(), s.kvStart(), s.kvLen(), s.causal(), s.diagonal(), q, o, lse, delta, dO,
            dq));
      }
      return new AttentionBatch(batch.shape(), segments, slices);
    }

    @Override
    public void close() {
      copies.values().forEach(Tensor::close);
    }
  }

  private static byte[] bytes(Tensor t) {
    byte[] b = new byte[(int) t.byteSize()];
    t.buffer().getBytes(t.byteOffset(), b);
    return b;
  }

  @ParameterizedTest(name = "{0}, all pinned: {1}")
  @MethodSource("cases")
  void forwardFromPinnedMemoryEqualsTheStagedPath(Case c, boolean all) {
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED);
        PinnedCopies pinned = new PinnedCopies(all)) {
      AttentionBatch plain = f.forwardBatch();
      AttentionBatch direct = pinned.of(plain, false);
      PinnedTransfers.Stats before = backend.pinnedStats();
      CudaBackend.await(backend.submitForward(plain));
      PinnedTransfers.Stats afterPlain = backend.pinnedStats();
      assertEquals(before.directUploadBytes(), afterPlain.directUploadBytes(), "ordinary memory is staged");
      assertEquals(before.directDownloadBytes(), afterPlain.directDownloadBytes());
      CudaBackend.await(backend.submitForward(direct));
      PinnedTransfers.Stats after = backend.pinnedStats();
      assertEquals(pinned.inputBytes, after.directUploadBytes() - afterPlain.directUploadBytes(),
          "every pinned input went direct");
      assertEquals(pinned.outputBytes, after.directDownloadBytes() - afterPlain.directDownloadBytes(),
          "every pinned output went direct");
      assertTrue(pinned.inputBytes > 0 && (pinned.outputBytes > 0 || c.slices().stream().allMatch(s -> s.qLen() == 0)));
      for (int i = 0; i < plain.slices().size(); i++) {
        assertArrayEquals(bytes(plain.slices().get(i).o()), bytes(direct.slices().get(i).o()), c + ": O of slice " + i);
      }
      for (int i = 0; i < plain.slices().size(); i++) {
        LseView want = plain.slices().get(i).lse();
        LseView got = direct.slices().get(i).lse();
        for (int h = 0; h < c.shape().headsQ(); h++) {
          for (int row = 0; row < plain.slices().get(i).qLen(); row++) {
            assertEquals(Float.floatToRawIntBits(want.lse().getFloat(want.index(h, row))),
                Float.floatToRawIntBits(got.lse().getFloat(got.index(h, row))),
                c + ": LSE of slice " + i + " head " + h + " row " + row);
          }
        }
      }
    }
  }

  @ParameterizedTest(name = "{0}, all pinned: {1}")
  @MethodSource("cases")
  void backwardFromPinnedMemoryEqualsTheStagedPath(Case c, boolean all) {
    try (AttentionFixture f = new AttentionFixture(allocator, c.shape(), c.segments(), c.slices(), SEED + 1)) {
      CudaBackend.await(backend.submitForward(f.forwardBatch())); // O and LSE as backward inputs
      AttentionBatch plain = f.backwardBatch();
      CudaBackend.await(backend.submitBackward(plain));
      List<byte[]> first = gradients(plain, t -> bytes(t));
      CudaBackend.await(backend.submitBackward(plain));
      List<Tensor> again = gradientTensors(plain);
      try (PinnedCopies pinned = new PinnedCopies(all)) {
        AttentionBatch direct = pinned.of(plain, true);
        PinnedTransfers.Stats before = backend.pinnedStats();
        CudaBackend.await(backend.submitBackward(direct));
        PinnedTransfers.Stats after = backend.pinnedStats();
        assertEquals(pinned.inputBytes, after.directUploadBytes() - before.directUploadBytes(), "pinned inputs went direct");
        assertEquals(pinned.outputBytes, after.directDownloadBytes() - before.directDownloadBytes(), "pinned outputs went direct");
        assertTrue(pinned.inputBytes > 0);
        List<Tensor> directOut = gradientTensors(direct);
        int dqCount = direct.slices().size(); // dQ comes first and is summed with float atomics
        for (int i = 0; i < directOut.size(); i++) {
          assertSame(c + " gradient " + i + " (seed " + (SEED + 1) + ")", first.get(i), again.get(i), directOut.get(i),
              i < dqCount);
        }
      }
    }
  }

  /** dQ of every slice, then dK and dV of every segment. */
  private static List<Tensor> gradientTensors(AttentionBatch b) {
    List<Tensor> out = new ArrayList<>();
    b.slices().forEach(s -> out.add(s.dq()));
    b.segments().forEach(s -> out.add(s.dk()));
    b.segments().forEach(s -> out.add(s.dv()));
    return out;
  }

  private static List<byte[]> gradients(AttentionBatch b, Function<Tensor, byte[]> read) {
    List<byte[]> out = new ArrayList<>();
    for (Tensor t : gradientTensors(b)) {
      out.add(read.apply(t));
    }
    return out;
  }

  /**
   * dK and dV (no atomics): bit for bit. dQ (fp32 atomics in a varying order, then rounded to the
   * 16-bit output type): each element within twice the largest difference between two plain runs,
   * within two units in the last place of the output type, or within 2^-16 of the tensor's largest
   * magnitude, whichever is largest: a different summation order can move the rounded value by one
   * step even where two plain runs happened to agree, and an element whose summands nearly cancel
   * carries rounding differences of the size of its summands, not of itself (a bf16 d256 element of
   * 4.4e-7 moved by 9.3e-9, five of its own units, between orders). A transfer that garbles or
   * misplaces data moves elements by the tensor's own scale.
   */
  private static void assertSame(String what, byte[] first, Tensor plainAgain, Tensor direct, boolean atomics) {
    byte[] second = bytes(plainAgain);
    byte[] actual = bytes(direct);
    if (!atomics) {
      assertArrayEquals(first, second, what + ": two plain runs of a gradient without atomics agree");
      assertArrayEquals(first, actual, what + ": bit for bit");
      return;
    }
    double spread = 0;
    double largest = 0;
    try (BufferAllocator a = new RootAllocator();
        Tensor firstRun = Tensor.allocate(a, plainAgain.dtype(), plainAgain.shape())) {
      firstRun.buffer().setBytes(0, first);
      for (long i = 0; i < plainAgain.numel(); i++) {
        float again = plainAgain.getFloat(i);
        spread = Math.max(spread, Math.abs(again - firstRun.getFloat(i)));
        largest = Math.max(largest, Math.abs(again));
      }
    }
    int mantissaBits = direct.dtype() == DType.FP16 ? 10 : direct.dtype() == DType.BF16 ? 7 : 23;
    double orderFloor = Math.scalb(largest, -16);
    for (long i = 0; i < direct.numel(); i++) {
      float x = direct.getFloat(i);
      float y = plainAgain.getFloat(i);
      double diff = Math.abs(x - y);
      double tolerance = Math.max(Math.max(2 * spread, orderFloor),
          2 * ulp(Math.max(Math.abs(x), Math.abs(y)), mantissaBits));
      assertTrue(diff <= tolerance, what + " element " + i + ": " + x + " vs " + y
          + " (plain runs differ by up to " + spread + ", tolerance " + tolerance + ")");
    }
  }

  /** One unit in the last place of a float with this many mantissa bits (fp16's subnormal step at least). */
  private static double ulp(float magnitude, int mantissaBits) {
    double step = Math.ulp(magnitude) * Math.pow(2, 23 - mantissaBits);
    return mantissaBits == 10 ? Math.max(step, Math.pow(2, -24)) : step;
  }
}
