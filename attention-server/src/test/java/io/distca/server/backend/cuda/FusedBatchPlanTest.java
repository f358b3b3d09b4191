package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/** Descriptors, work lists and arena layout of fused batches, checked against brute-force counts. */
class FusedBatchPlanTest extends AllocatorPerTest {
  /** Odd tile sizes so that no length in the tests divides evenly by accident. */
  static final KernelGeometry GEOMETRY = new KernelGeometry(64, 48, 40, 128, 70_000, 32, 56, 256, 90_000, 128, 8, 0, 0, 0, 0);

  static AttentionShape shape(int hq, int hkv, int d) {
    return new AttentionShape(hq, hkv, d, DType.BF16, AttentionShape.defaultScale(d));
  }

  /** Random segments and slices: shared segments, kvStart offsets, causal and full, empty slices. */
  static List<SliceSpec> randomSpecs(Random random, int[] segmentLengths, int slices) {
    List<SliceSpec> specs = new ArrayList<>();
    for (int i = 0; i < slices; i++) {
      int segment = random.nextInt(segmentLengths.length);
      int len = segmentLengths[segment];
      int kvStart = random.nextInt(len + 1);
      int kvLen = random.nextInt(len - kvStart + 1);
      int qLen = random.nextInt(4) == 0 ? 0 : 1 + random.nextInt(150);
      boolean causal = random.nextBoolean();
      int diagonal = causal ? kvLen - qLen + random.nextInt(41) - 20 : 0;
      specs.add(new SliceSpec(segment, kvStart, kvLen, causal, diagonal, qLen));
    }
    return specs;
  }

  @Test
  void forwardDescriptorsPackSlicesAndSegmentsInOrder() {
    int[] segments = {100, 0, 37};
    List<SliceSpec> specs = List.of(
        SliceSpec.causalBottomRight(2, 20, 37),
        new SliceSpec(0, 10, 50, false, 0, 7),
        new SliceSpec(2, 5, 30, true, -3, 0),
        SliceSpec.causalBottomRight(0, 100, 100));
    try (AttentionFixture f = new AttentionFixture(allocator, shape(4, 2, 64), segments, specs, 1)) {
      FusedBatchPlan plan = FusedBatchPlan.forward(f.forwardBatch(), GEOMETRY);
      assertEquals(127, plan.totalQ);
      assertEquals(137, plan.totalK);
      assertArrayEquals(new int[] {0, 20, 27, 27}, plan.sliceQStart);
      assertArrayEquals(new int[] {0, 100, 100}, plan.segmentKStart);
      assertArrayEquals(new int[] {
          0, 20, 100, 37, 1, 17, 2, 0,
          20, 7, 10, 50, 0, 0, 0, 0,
          27, 0, 105, 30, 1, -3, 2, 0,
          27, 100, 0, 100, 1, 0, 0, 0}, plan.sliceDescriptors);
      assertEquals(0, plan.segmentDescriptors.length, "forward has no segment descriptors");
    }
  }

  @Test
  void forwardWorkListHasEveryQueryTileOnceMostExpensiveFirst() {
    Random random = new Random(7);
    for (int trial = 0; trial < 20; trial++) {
      int[] segments = {1 + random.nextInt(300), random.nextInt(200), 1 + random.nextInt(500)};
      List<SliceSpec> specs = randomSpecs(random, segments, 1 + random.nextInt(12));
      try (AttentionFixture f = new AttentionFixture(allocator, shape(2, 1, 64), segments, specs, trial)) {
        AttentionBatch batch = f.forwardBatch();
        FusedBatchPlan plan = FusedBatchPlan.forward(batch, GEOMETRY);
        Set<Long> expected = new HashSet<>();
        for (int s = 0; s < specs.size(); s++) {
          for (int b = 0; b * GEOMETRY.forwardBlockM() < specs.get(s).qLen(); b++) {
            expected.add(((long) s << 32) | b);
          }
        }
        Set<Long> seen = new HashSet<>();
        for (int w = 0; w < plan.numWork; w++) {
          int slice = plan.work[2 * w];
          int block = plan.work[2 * w + 1];
          assertTrue(seen.add(((long) slice << 32) | block), "tile listed twice: slice " + slice + " block " + block);
          assertEquals(bruteForceForwardCost(batch.slices().get(slice), block), plan.workCost[w],
              "cost of slice " + slice + " block " + block);
          if (w > 0) {
            assertTrue(plan.workCost[w - 1] >= plan.workCost[w], "work list not most-expensive-first at " + w);
          }
        }
        assertEquals(expected, seen);
      }
    }
  }

  /** Key blocks a query tile visits: up to the last key any of its rows sees. */
  static long bruteForceForwardCost(QuerySlice s, int block) {
    int lastVisibleKey = -1;
    int from = block * GEOMETRY.forwardBlockM();
    int to = Math.min(s.qLen(), from + GEOMETRY.forwardBlockM());
    for (int i = from; i < to; i++) {
      for (int j = 0; j < s.kvLen(); j++) {
        if (!s.causal() || j <= i + s.diagonal()) {
          lastVisibleKey = Math.max(lastVisibleKey, j);
        }
      }
    }
    return (lastVisibleKey + GEOMETRY.forwardBlockN()) / GEOMETRY.forwardBlockN();
  }

  @Test
  void backwardWorkListCoversEveryKeyTileOfEverySegmentWithItsReaders() {
    Random random = new Random(11);
    for (int trial = 0; trial < 20; trial++) {
      int[] segments = {1 + random.nextInt(300), random.nextInt(120), 1 + random.nextInt(400), 1 + random.nextInt(60)};
      List<SliceSpec> specs = randomSpecs(random, segments, random.nextInt(10));
      try (AttentionFixture f = new AttentionFixture(allocator, shape(4, 2, 64), segments, specs, trial)) {
        AttentionBatch batch = f.backwardBatch();
        FusedBatchPlan plan = FusedBatchPlan.backward(batch, GEOMETRY);
        Set<Long> seen = new HashSet<>();
        int tiles = 0;
        for (int len : segments) {
          tiles += (len + GEOMETRY.backwardBlockN() - 1) / GEOMETRY.backwardBlockN();
        }
        assertEquals(tiles, plan.numWork, "every key tile of every segment, read or not");
        for (int w = 0; w < plan.numWork; w++) {
          int segment = plan.work[2 * w];
          int block = plan.work[2 * w + 1];
          assertTrue(seen.add(((long) segment << 32) | block));
          assertEquals(bruteForceBackwardCost(batch, segment, block), plan.workCost[w]);
          if (w > 0) {
            assertTrue(plan.workCost[w - 1] >= plan.workCost[w]);
          }
        }
        for (int g = 0; g < segments.length; g++) {
          int at = g * DistcaAttnAbi.SEGMENT_INTS;
          assertEquals(plan.segmentKStart[g], plan.segmentDescriptors[at]);
          assertEquals(segments[g], plan.segmentDescriptors[at + 1]);
          List<Integer> readers = new ArrayList<>();
          for (int i = 0; i < specs.size(); i++) {
            if (specs.get(i).segment() == g) {
              readers.add(i);
            }
          }
          int begin = plan.segmentDescriptors[at + 2];
          int count = plan.segmentDescriptors[at + 3];
          assertEquals(readers.size(), count, "readers of segment " + g);
          for (int r = 0; r < count; r++) {
            assertEquals(readers.get(r), plan.segmentSlices[begin + r]);
          }
        }
      }
    }
  }

  /** Query rows (over the segment's slices) that see at least one key of the tile. */
  static long bruteForceBackwardCost(AttentionBatch batch, int segment, int block) {
    int from = block * GEOMETRY.backwardBlockN();
    int to = Math.min(batch.segments().get(segment).length(), from + GEOMETRY.backwardBlockN());
    long rows = 0;
    for (QuerySlice s : batch.slices()) {
      if (s.segment() != segment) {
        continue;
      }
      for (int i = 0; i < s.qLen(); i++) {
        for (int key = from; key < to; key++) {
          int j = key - s.kvStart();
          if (j >= 0 && j < s.kvLen() && (!s.causal() || j <= i + s.diagonal())) {
            rows++;
            break;
          }
        }
      }
    }
    return rows;
  }

  @Test
  void layoutBuffersAreAlignedDisjointAndSizedForTheirTensors() {
    int[] segments = {77, 130};
    List<SliceSpec> specs = List.of(SliceSpec.causalBottomRight(1, 33, 130), SliceSpec.full(0, 3, 70, 9));
    AttentionShape shape = shape(6, 3, 64);
    try (AttentionFixture f = new AttentionFixture(allocator, shape, segments, specs, 3)) {
      long qBytes = 42L * 6 * 64 * 2;
      long kBytes = 207L * 3 * 64 * 2;
      long lseBytes = 4L * 6 * 42;
      FusedBatchPlan fwd = FusedBatchPlan.forward(f.forwardBatch(), GEOMETRY);
      FusedBatchPlan.Layout a = fwd.layout;
      assertDisjointAligned(new long[][] {
          {a.q(), qBytes}, {a.k(), kBytes}, {a.v(), kBytes}, {a.slices(), 4L * 2 * 8}, {a.work(), 4L * 2 * fwd.numWork},
          {a.o(), qBytes}, {a.lse(), lseBytes}, {a.tileCounter(), 4}});
      assertTrue(a.work() + 8L * fwd.numWork <= a.inputBytes(), "inputs end before outputs");
      assertTrue(a.o() >= a.outputStart() && a.lse() + lseBytes <= a.outputStart() + a.outputBytes());
      assertTrue(a.pinnedBytes() <= a.tileCounter() && a.tileCounter() + 4 <= a.deviceBytes(),
          "the tile counter is the forward's only device-only word, after everything staged");

      FusedBatchPlan bwd = FusedBatchPlan.backward(f.backwardBatch(), GEOMETRY);
      FusedBatchPlan.Layout b = bwd.layout;
      assertDisjointAligned(new long[][] {
          {b.q(), qBytes}, {b.k(), kBytes}, {b.v(), kBytes}, {b.dout(), qBytes}, {b.lse(), lseBytes},
          {b.dsum(), lseBytes}, {b.slices(), 64}, {b.segments(), 32}, {b.segmentSlices(), 8},
          {b.work(), 8L * bwd.numWork}, {b.dq(), qBytes}, {b.dk(), kBytes}, {b.dv(), kBytes},
          {b.dqAccum(), 4L * 42 * 6 * 64}, {b.dqClaims(), lseBytes}, {b.tileCounter(), 4}});
      assertEquals(-1, b.o(), "the backward has no O: the request's delta goes into dsum");
      assertTrue(b.work() + 8L * bwd.numWork <= b.inputBytes());
      assertTrue(b.dsum() + lseBytes <= b.inputBytes(), "dsum (the request's delta) is uploaded with the inputs");
      assertTrue(b.dq() >= b.outputStart() && b.dv() + kBytes <= b.outputStart() + b.outputBytes());
      assertTrue(b.pinnedBytes() <= b.dqAccum(), "workspace is device-only, after everything staged");
      assertTrue(b.dqAccum() + 4L * 42 * 6 * 64 <= b.deviceBytes() && b.tileCounter() + 4 <= b.deviceBytes());
      assertTrue(b.pinnedBytes() <= b.dqClaims() && b.dqClaims() + lseBytes <= b.deviceBytes(),
          "the dQ claim words are device-only workspace");
    }
  }

  /**
   * distca_attn.h section 9: one K/V head for 8 query heads over a long causal document gives few
   * key tiles, the first ones much longer than the SMs' share, and the plan for the warp-specialized
   * backward splits their groups: every key tile's items partition its group's query heads, the
   * items' costs add up to the unsplit work, the list stays longest first, the dK/dV workspace is
   * device-only and sized fp32 [2][total_k, heads_kv, d]. Without SMs (the other kernel) there are
   * no splits.
   */
  @Test
  void fewLongKeyTilesOfALargeGroupAreSplitOverItsHeads() {
    int len = 3000;
    AttentionShape shape = shape(8, 1, 64);
    try (AttentionFixture f = new AttentionFixture(allocator, shape, new int[] {len},
        List.of(SliceSpec.causalBottomRight(0, len, len)), 9)) {
      FusedBatchPlan whole = FusedBatchPlan.backward(f.backwardBatch(), GEOMETRY);
      FusedBatchPlan split = FusedBatchPlan.backward(f.backwardBatch(), GEOMETRY, 132, false);
      assertTrue(!whole.groupSplits && whole.layout.dkvAccum() == -1, "no SMs given: no splits");
      assertTrue(split.groupSplits, "split");
      assertTrue(split.numWork > whole.numWork);
      int blocks = (len + GEOMETRY.backwardBlockN() - 1) / GEOMETRY.backwardBlockN();
      long[] headsCovered = new long[blocks]; // a bit per query head of the group
      long unsplitCost = 0;
      long splitCost = 0;
      for (long c : whole.workCost) {
        unsplitCost += c * 8;
      }
      for (int i = 0; i < split.numWork; i++) {
        int word = split.work[2 * i + 1];
        int block = word & DistcaAttnAbi.WORK_BLOCK_MASK;
        int first = (word >>> DistcaAttnAbi.WORK_HEAD_SHIFT) & 0x3f;
        int count = word >>> DistcaAttnAbi.WORK_HEADS_SHIFT;
        int end = count == 0 ? 8 : first + count;
        for (int h = first; h < end; h++) {
          assertEquals(0, headsCovered[block] & (1L << h), "block " + block + " head " + h + " in one item only");
          headsCovered[block] |= 1L << h;
        }
        splitCost += split.workCost[i];
        if (i > 0) {
          assertTrue(split.workCost[i] <= split.workCost[i - 1], "longest first");
        }
      }
      for (int b = 0; b < blocks; b++) {
        assertEquals(0xffL, headsCovered[b], "key block " + b + ": the items cover the group");
      }
      // the whole list's costs are per query head: the same work, split into items
      assertEquals(unsplitCost, splitCost);
      FusedBatchPlan.Layout at = split.layout;
      assertTrue(at.pinnedBytes() <= at.dkvAccum()
          && at.dkvAccum() + 2L * 4 * len * 1 * 64 <= at.deviceBytes(), "the dK/dV workspace is device-only");
    }
  }

  /** Splits only where they shorten the schedule: not one-head groups, not many short key tiles, not equal ones. */
  @Test
  void groupSplitsOnlyWhereTheScheduleGains() {
    long[] causal = causalKeyTiles(16384);
    long[] equal = new long[128];
    Arrays.fill(equal, 16384);
    assertTrue(FusedBatchPlan.groupSplits(causal, 1, 8, 132, 64) != null, "8/1 causal 16K");
    long[] causal512 = causalKeyTiles(512);  // 32 sequences of 512: two pieces a key tile at most
    assertEquals(Map.of(2, 128), histogram(FusedBatchPlan.groupSplits(causal512, 1, 8, 132, 64)), "8/1 causal 512");
    assertEquals(null, FusedBatchPlan.groupSplits(causal512, 1, 4, 132, 64), "4/1 causal 512: not even two pay");
    long[] causal1k = causalKeyTiles(1024);
    assertTrue(FusedBatchPlan.groupSplits(causal1k, 1, 8, 132, 64) != null, "8/1 causal 1K");
    assertEquals(null, FusedBatchPlan.groupSplits(causal, 1, 1, 132, 64), "MHA: nothing to split");
    assertEquals(null, FusedBatchPlan.groupSplits(causal, 8, 4, 132, 64), "32/8: 1,024 key tiles balance");
    assertEquals(null, FusedBatchPlan.groupSplits(equal, 1, 8, 132, 64), "128 equal key tiles on 132 SMs");
    assertEquals(null, FusedBatchPlan.groupSplits(causal, 1, 65, 132, 64), "groups over 64 heads");
    int[] splits = FusedBatchPlan.groupSplits(causal, 1, 8, 132, 64);
    assertTrue(splits[0] > 1 && splits[0] <= 8 && splits[0] >= splits[127], "the longest key tiles most");
    assertEquals(8, splits[0], "16K: the longest key tiles' one-head walks are long, one head a piece");
  }

  /**
   * Head dim 256 (64-key tiles): where the longest causal walk of one head is under 32 steps, a
   * split batch splits every item into two pieces, not the model's two for the longest items only
   * (native/NOTES.md v79); longer walks, smaller groups, non-causal batches and the smaller head dims
   * keep the model's counts. The histograms are what schedule_policy.group_splits gives for the same
   * costs (short_uniform).
   */
  @Test
  void groupSplitsUniformAtHeadDim256WhereTheCausalWalksAreShort() {
    long[] shortMix = mixKeyTilesOf(64, 1000, 700, 300, 200);
    assertEquals(252, shortMix.length);
    assertEquals(Map.of(1, 105, 2, 147),
        histogram(FusedBatchPlan.groupSplits(shortMix, 1, 8, 132, 64, false, true, false)), "8/1, the model's counts");
    assertEquals(Map.of(2, 252),
        histogram(FusedBatchPlan.groupSplits(shortMix, 1, 8, 132, 64, false, true, true)), "8/1 at d256: all in two");
    assertEquals(Map.of(1, 105, 2, 147),
        histogram(FusedBatchPlan.groupSplits(shortMix, 1, 8, 132, 64, false, false, true)), "8/1 at d256, not all causal");
    assertEquals(null, FusedBatchPlan.groupSplits(shortMix, 1, 4, 132, 64, false, true, true), "4/1: no gain modelled");
    assertEquals(null, FusedBatchPlan.groupSplits(shortMix, 2, 8, 132, 64, false, true, true), "16/2: no gain modelled");
    long[] mix2k = mixKeyTilesOf(64, 2000, 1000, 500);
    assertEquals(Map.of(2, 256), histogram(FusedBatchPlan.groupSplits(mix2k, 1, 4, 132, 64, false, true, true)), "4/1 at d256");
    assertEquals(Map.of(1, 104, 2, 152), histogram(FusedBatchPlan.groupSplits(mix2k, 1, 4, 132, 64, false, true, false)), "4/1");
    long[] mix3k = mixKeyTilesOf(64, 3000, 1100, 700, 300);  // a 47-step walk: the rule of 32-64 steps
    assertEquals(Map.of(4, 243), histogram(FusedBatchPlan.groupSplits(mix3k, 1, 8, 132, 64, false, true, true)), "8/1 up to 3K");
    assertEquals(Map.of(1, 81, 2, 162), histogram(FusedBatchPlan.groupSplits(mix3k, 1, 4, 132, 64, false, true, true)),
        "4/1 up to 3K: the model's counts");
  }

  /**
   * native/NOTES.md v79's rule (schedule_policy.l2_order_pieces gives the same counts): at head_dim 256,
   * causal groups of 8 to 16 heads whose longest one-head walk has 12 up to 64 steps split every key
   * tile into four pieces, whatever the model finds, and (v80) so do longer walks where there are two
   * K/V heads or more, and walks from 6 steps in groups of 12-16; shorter walks, longer ones with one
   * K/V head, groups under 8, non-causal batches and smaller head dims are left to the model.
   */
  @Test
  void l2OrderPiecesWhereD256CausalWalksAre12To64Steps() {
    assertD256Pieces(4, 8, 1, "8/1 at 1K: 16 steps", 1024);
    assertD256Pieces(4, 16, 1, "16/1 at 2K", 2048);
    assertD256Pieces(4, 8, 1, "47 steps", 3000, 1100, 700, 300);
    assertD256Pieces(4, 8, 1, "15.6 steps", 1000, 700, 300, 200);
    assertD256Pieces(0, 8, 1, "8 steps: too short", 512);
    assertD256Pieces(0, 8, 1, "9.4 steps", 600, 400, 200);
    assertD256Pieces(0, 8, 1, "64 steps: the long rules", 4096);
    assertD256Pieces(0, 16, 1, "125 steps, one K/V head: the long rules", 8000, 4000, 2000, 1000, 500);
    assertD256Pieces(4, 8, 2, "64 steps, 2 K/V heads (16/2)", 4096);
    assertD256Pieces(4, 12, 2, "125 steps, 24/2", 8000, 4000, 2000, 1000, 500);
    assertD256Pieces(4, 8, 4, "256 steps, 32/4", 16384);
    assertD256Pieces(0, 8, 4, "8 steps, 32/4: too short", 512);
    assertD256Pieces(0, 4, 4, "a group of 4, 16/4", 4096);
    assertD256Pieces(0, 4, 1, "a group of 4", 1024);
    assertD256Pieces(4, 12, 1, "12/1 at 512: 8 steps, a group of 12", 512);
    assertD256Pieces(4, 16, 2, "32/2 up to 400 tokens: 6.25 steps", 400, 200);
    assertD256Pieces(0, 16, 1, "16/1 at 256: 4 steps", 256);
    assertD256Pieces(0, 12, 2, "24/2 up to 320 tokens: 5 steps", 320, 160);
    assertEquals(0, FusedBatchPlan.l2OrderPieces(mixKeyTilesOf(64, 1024), 8, 64, false, 256, 1), "not all causal");
    assertEquals(0, FusedBatchPlan.l2OrderPieces(mixKeyTilesOf(64, 1024), 8, 64, true, 128, 1), "head_dim 128");
  }

  /** {@link FusedBatchPlan#l2OrderPieces} at head_dim 256, causal, 64-row steps, on mixKeyTilesOf(64, lengths). */
  private static void assertD256Pieces(int expected, int group, int headsKv, String why, int... lengths) {
    assertEquals(expected, FusedBatchPlan.l2OrderPieces(mixKeyTilesOf(64, lengths), group, 64, true, 256, headsKv), why);
  }

  /**
   * native/NOTES.md v80's wider rule: causal groups of 17 to 64 heads at head_dim 256 split every key
   * tile into 8 pieces (up to 32 heads) or 16, from walks of 6 steps (the same counts as
   * schedule_policy.l2_order_pieces); not past the split kernel's 64 heads, nor non-causal, nor at 128.
   */
  @Test
  void l2OrderPiecesInGroupsOver16HeadsFromSixSteps() {
    assertD256Pieces(8, 20, 1, "20/1 at 1K", 1024);
    assertD256Pieces(8, 24, 1, "24/1 at 512: 8 steps", 512);
    assertD256Pieces(8, 32, 1, "32/1 at 1K", 1024);
    assertD256Pieces(8, 32, 1, "32/1 at 16K: 256 steps", 16384);
    assertD256Pieces(16, 40, 1, "40/1 at 2K", 2048);
    assertD256Pieces(16, 48, 1, "48/1 at 1K", 1024);
    assertD256Pieces(16, 64, 1, "64/1 at 8K", 8192);
    assertD256Pieces(8, 24, 1, "24/1 up to 400 tokens: 6.25 steps", 400, 200);
    assertD256Pieces(0, 64, 1, "64/1 at 256: 4 steps", 256);
    assertD256Pieces(0, 65, 1, "past the split kernel", 1024);
    assertEquals(0, FusedBatchPlan.l2OrderPieces(mixKeyTilesOf(64, 1024), 32, 64, false, 256, 1), "not all causal");
    assertEquals(0, FusedBatchPlan.l2OrderPieces(mixKeyTilesOf(64, 1024), 32, 64, true, 128, 1), "head_dim 128");
  }

  /**
   * A backward plan under that rule: 8/1 at head_dim 256 over causal documents of 1,500 and 700
   * tokens. Every key tile is in four pieces of two heads, which cover its group once; the list holds
   * every key tile's first piece (longest first), then every second piece, and so on; its costs add
   * up to the unsplit work; and the backward gets no bands (the list is not longest first).
   */
  @Test
  void d256PlanSplitsInHeadOrderWhereTheWalksAreShort() {
    KernelGeometry g = new KernelGeometry(256, 128, 80, 256, 197_632, 64, 64, 256, 225_280, 256, 8, 384, 230_912, 384,
        225_792);
    int[] docs = {1500, 700};
    try (AttentionFixture f = new AttentionFixture(allocator, shape(8, 1, 256), docs,
        List.of(SliceSpec.causalBottomRight(0, docs[0], docs[0]), SliceSpec.causalBottomRight(1, docs[1], docs[1])), 10)) {
      FusedBatchPlan whole = FusedBatchPlan.backward(f.backwardBatch(), g);
      FusedBatchPlan split = FusedBatchPlan.backward(f.backwardBatch(), g, 132, false);
      assertTrue(split.groupSplits && split.headOrderedSplits, "split in head order");
      assertEquals(4 * whole.numWork, split.numWork, "four pieces a key tile");
      long unsplitCost = 0;
      for (long c : whole.workCost) {
        unsplitCost += c * 8;
      }
      long splitCost = 0;
      Map<Long, Integer> seen = new HashMap<>();
      int lastFirst = -1;
      for (int i = 0; i < split.numWork; i++) {
        int word = split.work[2 * i + 1];
        int first = (word >>> DistcaAttnAbi.WORK_HEAD_SHIFT) & 0x3f;
        int count = word >>> DistcaAttnAbi.WORK_HEADS_SHIFT;
        assertEquals(2, count, "pieces of two heads");
        assertTrue(first >= lastFirst, "head ranges in order at " + i);
        if (first == lastFirst) {
          assertTrue(split.workCost[i] <= split.workCost[i - 1], "longest first within a head range at " + i);
        }
        lastFirst = first;
        long key = ((long) split.work[2 * i] << 32) | (word & DistcaAttnAbi.WORK_BLOCK_MASK);
        int heads = seen.getOrDefault(key, 0);
        assertEquals(0, heads & (3 << first), "a key tile's heads in one piece only");
        seen.put(key, heads | 3 << first);
        splitCost += split.workCost[i];
      }
      assertEquals(whole.numWork, seen.size(), "every key tile");
      seen.values().forEach(h -> assertEquals(0xff, h, "the pieces cover the group"));
      assertEquals(unsplitCost, splitCost);
      assertEquals(0, WorkBands.backward(split, 132, g.backwardBlockM(), false).length, "no bands");
    }
  }

  /** 16,384 / s sequences of s tokens, causal: each key tile's query rows, in key-tile order. */
  private static long[] causalKeyTiles(int s) {
    return mixKeyTiles(s);
  }

  /** How many items got each split count (n -> items), as Python's collections.Counter counts them. */
  private static Map<Integer, Integer> histogram(int[] splits) {
    Map<Integer, Integer> out = new TreeMap<>();
    for (int n : splits) {
      out.merge(n, 1, Integer::sum);
    }
    return out;
  }

  /**
   * Where the longest one-head walk has 32 to 64 steps (2K-4K tokens at 64 query rows a step) the
   * pieces walk two heads at least and a key tile has four pieces at most, where it is shorter two
   * pieces at most (groups of 4 and more), but four in groups of 12 and more whose walk has 12 steps
   * at least (native/NOTES.md v80), elsewhere the split counts are v64's; the histograms are what
   * schedule_policy.group_splits gives for the same costs (the two hosts' policies are the same).
   */
  @Test
  void groupSplitsFewerPiecesWhereTheWalksAreShort() {
    assertEquals(Map.of(2, 8, 3, 8, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 8, 132, 64)), "8/1 at 2K: pieces of 2 heads");
    assertEquals(Map.of(1, 4, 2, 4, 3, 8, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(4096), 1, 16, 132, 64)), "16/1 at 4K: at most 4 pieces");
    assertEquals(Map.of(2, 8, 3, 8, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 16, 132, 64)), "16/1 at 2K: at most 4 pieces");
    assertEquals(Map.of(2, 8, 3, 8, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 32, 132, 64)), "32/1 at 2K: at most 4 pieces");
    assertEquals(Map.of(1, 16, 2, 24, 3, 24, 4, 64),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 12, 132, 64)), "12/1 at 2K: at most 4 pieces");
    assertEquals(Map.of(2, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(1024), 1, 8, 132, 64)), "8/1 at 1K: two pieces a tile");
    assertEquals(Map.of(2, 16, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(1024), 1, 16, 132, 64)), "16/1 at 1K: 16 steps, up to 4 pieces");
    assertEquals(Map.of(2, 16, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(1024), 1, 12, 132, 64)), "12/1 at 1K: up to 4 pieces");
    assertEquals(Map.of(2, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(512), 1, 16, 132, 64)), "16/1 at 512: 8 steps, two pieces");
    assertEquals(Map.of(1, 24, 2, 16, 3, 16, 4, 72),
        histogram(FusedBatchPlan.groupSplits(mixKeyTiles(1500, 400), 1, 16, 132, 64, false, true)), "16/1 up to 1.5K");
    assertEquals(Map.of(1, 40, 2, 88),
        histogram(FusedBatchPlan.groupSplits(mixKeyTiles(1500, 400), 1, 16, 132, 128, false, true)),
        "16/1 up to 1.5K in 128-row steps: under 12 steps, two pieces");
    assertEquals(Map.of(1, 5, 2, 8, 3, 13, 4, 102),
        histogram(FusedBatchPlan.groupSplits(mixKeyTiles(2000, 1000, 500), 2, 12, 132, 64, false, true)), "24/2 up to 2K");
    assertEquals(Map.of(1, 16, 2, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(4096), 1, 4, 132, 64)), "4/1 at 4K: pieces of 2 heads");
    assertEquals(Map.of(1, 16, 2, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 2, 132, 64)), "2/1 at 2K: one head a piece");
    assertEquals(Map.of(1, 3, 2, 4, 3, 4, 4, 4, 5, 4, 6, 4, 7, 4, 8, 101),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(16384), 1, 8, 132, 64)), "8/1 at 16K: as v64");
  }

  /**
   * On a GPU with little DRAM bandwidth per SM (an H100), in batches of causal slices only, groups of
   * 8 heads and more whose longest one-head walk has 32 to 63 steps of 64 rows split into the most pieces allowed there, every key
   * tile alike, where the schedule model alone finds no gain (native/NOTES.md v69); where the model
   * already splits they are as on any GPU (v70); nothing changes for smaller groups, longer or shorter walks, 128-row steps, or
   * key tiles many enough to balance, nor in non-causal batches. The histograms are what
   * schedule_policy.group_splits gives with lean_dram=True, causal=True for the same costs.
   */
  @Test
  void groupSplitsOnLeanDramWhereTheWalksAreShort() {
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 16, 132, 64, false, true), "32/2 at 2K: no gain modelled");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 16, 132, 64, true, true)), "32/2 at 2K, lean: four pieces");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 8, 132, 64, true, true)), "16/2 at 2K, lean");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 4, 12, 132, 64, true, true)), "48/4 at 2K, lean");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(1024), 2, 16, 132, 64, true, true), "32/2 at 1K: 16 steps");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(1024), 2, 8, 132, 64, true, true), "16/2 at 1K: 16 steps");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(4096), 2, 16, 132, 64, true, true), "32/2 at 4K: 64 steps");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(512), 2, 16, 132, 64, true, true), "32/2 at 512: 8 steps");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 4, 7, 132, 64, true, true), "28/4: a group of 7");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 8, 132, 128, true, true), "128-row steps (head_dim 64)");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 8, 8, 132, 64, true, true), "64/8: 1,024 key tiles balance");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 8, 132, 64, true, true)), "8/1 at 2K: uniform, as without lean");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 16, 132, 64, true, false),
        "32/2, lean, but not every slice causal");
    assertTrue(FusedBatchPlan.leanDram(25.4e9) && !FusedBatchPlan.leanDram(36.5e9) && !FusedBatchPlan.leanDram(0),
        "an H100 is lean, an H200 is not, nor a GPU whose driver does not say");
    long[] full = new long[128];
    Arrays.fill(full, 2048);
    assertEquals(null, FusedBatchPlan.groupSplits(full, 2, 16, 132, 64, true, false), "32/2 non-causal 2K, lean");
  }

  /**
   * In batches of causal slices, groups of 8 heads and more whose longest one-head walk has 32 to 63
   * steps of 64 rows split every key tile into the same (largest allowed) number of pieces where the
   * schedule model splits at all, on any GPU (native/NOTES.md v70); the model's own counts stay for
   * non-causal batches, smaller groups, shorter walks and 128-row steps, and where the model
   * finds no gain nothing splits (without lean DRAM). The histograms are what schedule_policy.group_splits
   * gives for the same costs.
   */
  @Test
  void groupSplitsUniformWhereTheCausalWalksAre2KTo4K() {
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 8, 132, 64, false, true)), "8/1 at 2K");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 12, 132, 64, false, true)), "12/1 at 2K");
    assertEquals(Map.of(4, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 16, 132, 64, false, true)), "16/1 at 2K");
    long[] mix = mixKeyTiles(2048, 1536, 1024, 768, 512, 384, 256, 128);
    assertEquals(120, mix.length);
    assertEquals(Map.of(4, 120), histogram(FusedBatchPlan.groupSplits(mix, 2, 8, 132, 64, false, true)), "16/2 on a mix up to 2K");
    assertEquals(Map.of(1, 17, 2, 28, 3, 20, 4, 55), histogram(FusedBatchPlan.groupSplits(mix, 1, 8, 132, 64)),
        "8/1 on the mix, the model's counts where not every slice is causal");
    assertEquals(Map.of(2, 120), histogram(FusedBatchPlan.groupSplits(mix, 2, 4, 132, 64, false, true)),
        "8/2 on the mix: a group of 4, the model's");
    assertEquals(Map.of(1, 8, 2, 8, 3, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 6, 132, 64, false, true)), "6/1 at 2K: a group of 6");
    assertEquals(Map.of(1, 4, 2, 4, 3, 8, 4, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(4096), 1, 8, 132, 64, false, false)), "8/1 at 4K, not all causal");
    assertEquals(Map.of(2, 128),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(1024), 1, 8, 132, 64, false, true)), "8/1 at 1K: 16 steps");
    assertEquals(Map.of(1, 16, 2, 112),
        histogram(FusedBatchPlan.groupSplits(causalKeyTiles(2048), 1, 8, 132, 128, false, true)), "8/1 at 2K, 128-row steps");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(2048), 2, 8, 132, 64, false, true), "16/2 at 2K: no gain modelled");
    assertEquals(null, FusedBatchPlan.groupSplits(causalKeyTiles(512), 1, 4, 132, 64, false, true), "4/1 at 512: none pays");
  }

  /**
   * Where the longest one-head walk has 64 steps of 64 rows or more (causal documents from 4K tokens),
   * a causal batch that the schedule model splits splits every key tile into min(group / 2, 8) pieces
   * (native/NOTES.md v71), in groups over 32 heads into pieces of four heads as far as the walk
   * has 8 steps for each (v72); the model's counts stay for non-causal batches, groups under 8 heads and
   * 128-row steps, and nothing splits where the model finds no gain. The histograms are what
   * schedule_policy.group_splits gives for the same costs.
   */
  @Test
  void groupSplitsUniformWhereTheCausalWalksAreLonger() {
    long[] one16k = causalKeyTiles(16384);
    assertEquals(Map.of(4, 128), histogram(FusedBatchPlan.groupSplits(causalKeyTiles(4096), 1, 8, 132, 64, false, true)),
        "8/1 at 4K: pieces of two heads");
    assertEquals(Map.of(4, 128), histogram(FusedBatchPlan.groupSplits(one16k, 1, 8, 132, 64, false, true)), "8/1 at 16K");
    assertEquals(Map.of(6, 128), histogram(FusedBatchPlan.groupSplits(one16k, 1, 12, 132, 64, false, true)), "12/1 at 16K");
    assertEquals(Map.of(8, 128), histogram(FusedBatchPlan.groupSplits(one16k, 1, 16, 132, 64, false, true)), "16/1 at 16K");
    assertEquals(Map.of(8, 128), histogram(FusedBatchPlan.groupSplits(one16k, 1, 32, 132, 64, false, true)),
        "32/1 at 16K: at most 8 pieces, of four heads");
    assertEquals(Map.of(16, 128), histogram(FusedBatchPlan.groupSplits(one16k, 1, 64, 132, 64, false, true)),
        "64/1 at 16K: pieces of four heads (v72)");
    assertEquals(Map.of(12, 128), histogram(FusedBatchPlan.groupSplits(causalKeyTiles(8192), 1, 48, 132, 64, false, true)),
        "48/1 at 8K: pieces of four heads (v72)");
    assertEquals(Map.of(11, 53), histogram(FusedBatchPlan.groupSplits(keyTiles(6000, 700), 1, 64, 132, 64, false, true)),
        "64/1 with a walk of 93 steps: eleven pieces, one for each 8 steps (v72)");
    assertEquals(Map.of(8, 128), histogram(FusedBatchPlan.groupSplits(causalKeyTiles(4096), 1, 64, 132, 64, false, true)),
        "64/1 at 4K: 64 steps, eight pieces");
    assertEquals(Map.of(8, 124), histogram(FusedBatchPlan.groupSplits(mixKeyTiles(8192, 4096, 2048, 1024, 512), 2, 16, 132, 64,
        true, true)), "32/2 on a mix of documents up to 8K");
    assertEquals(Map.of(8, 47), histogram(FusedBatchPlan.groupSplits(keyTiles(5000, 700, 128), 1, 20, 132, 64, false, true)),
        "20/1 on documents of 5,000, 700 and 128 (CudaBackendGpuTest's)");
    assertEquals(null, FusedBatchPlan.groupSplits(one16k, 2, 8, 132, 64, true, true), "16/2 at 16K: no gain modelled, lean or not");
    assertEquals(null, FusedBatchPlan.groupSplits(mixKeyTiles(8192, 4096, 2048, 1024, 512), 4, 8, 132, 64, true, true),
        "32/4 on the mix: no gain modelled");
    Map<Integer, Integer> v64 = Map.of(1, 3, 2, 4, 3, 4, 4, 4, 5, 4, 6, 4, 7, 4, 8, 101);
    assertEquals(v64, histogram(FusedBatchPlan.groupSplits(one16k, 1, 8, 132, 64, false, false)), "8/1 at 16K, not all causal");
    assertEquals(v64, histogram(FusedBatchPlan.groupSplits(one16k, 1, 8, 132, 128, false, true)), "8/1 at 16K, 128-row steps");
    assertEquals(Map.of(1, 3, 2, 4, 3, 4, 4, 4, 5, 4, 6, 109), histogram(FusedBatchPlan.groupSplits(one16k, 1, 6, 132, 64, false, true)),
        "6/1 at 16K: a group of 6");
  }

  /** Documents of the given lengths, repeated while they fit 16,384 tokens, causal: each key tile's query rows. */
  private static long[] mixKeyTiles(int... lengths) {
    return mixKeyTilesOf(128, lengths);
  }

  /** The same with key tiles of {@code blockN} rows. */
  private static long[] mixKeyTilesOf(int blockN, int... lengths) {
    return repeatedKeyTiles(blockN, true, lengths);
  }

  /**
   * Documents of the given lengths, repeated in turn while they fit in 16,384 tokens, cut into key
   * tiles of {@code blockN} rows: each tile's query rows for one head (causal: the rows at or past its
   * first key; else all of the document's). schedule_policy.case_costs builds the same
   * (SchedulePolicyParityTest).
   */
  static long[] repeatedKeyTiles(int blockN, boolean causal, int... lengths) {
    int[] docs = repeatedDocuments(lengths);
    if (causal) {
      return keyTilesOf(blockN, docs);
    }
    List<Long> costs = new ArrayList<>();
    for (int s : docs) {
      for (int k = 0; k * blockN < s; k++) {
        costs.add((long) s);
      }
    }
    return costs.stream().mapToLong(Long::longValue).toArray();
  }

  /**
   * distca_attn.h section 13 (native/NOTES.md v81, v86, v87): the head_dim 64 backward takes steps of
   * 128 query rows where the slices under 1,536 query rows (3,072 under a causal mask) hold at most a
   * quarter of the batch's work (q_len x kv_len, half of it if causal); not with group splits, not at
   * other head dims, not for a batch without work.
   */
  @Test
  void q128StepsWhereTheLongSlicesHoldTheWork() {
    int full = DistcaAttnAbi.BWD_Q128_MIN_ROWS_FULL;
    int causal = DistcaAttnAbi.BWD_Q128_MIN_ROWS_CAUSAL;
    assertEquals(1536, full);
    assertEquals(3072, causal);
    assertEquals(4, DistcaAttnAbi.BWD_Q128_SHORT_WORK_DIVISOR);
    boolean[] noMask = {false, false};
    boolean[] masked = {true, true};
    assertTrue(q128(64, new int[] {full, 16384}, noMask, false));
    assertTrue(q128(64, new int[] {full - 1, 16384}, noMask, false), "a short slice with 1% of the work");
    assertFalse(q128(64, new int[] {full - 1, full - 1, full}, new boolean[3], false), "short slices with 2/3 of it");
    assertTrue(q128(64, new int[] {causal, 8192}, masked, false));
    assertFalse(q128(64, new int[] {causal - 1, causal - 1}, masked, false), "only short causal slices");
    assertFalse(q128(64, new int[] {full, full}, masked, false), "causal needs more rows");
    assertTrue(q128(64, new int[] {full, causal}, new boolean[] {false, true}, false), "mixed masks");
    // a quarter of the work exactly, and one key more
    assertTrue(FusedBatchPlan.q128Steps(64, new int[] {3000, 1000}, new int[] {3000, 3000}, noMask, false), "a quarter");
    assertFalse(FusedBatchPlan.q128Steps(64, new int[] {3000, 1000}, new int[] {3000, 3001}, noMask, false),
        "over a quarter");
    // a causal slice's work is half its rectangle: 1,500 x 4,000 causal is a quarter beside 3,000 x 3,000
    assertTrue(FusedBatchPlan.q128Steps(64, new int[] {3000, 1500}, new int[] {3000, 4000},
        new boolean[] {false, true}, false), "a causal short slice counts half");
    assertFalse(FusedBatchPlan.q128Steps(64, new int[] {3000, 1500}, new int[] {3000, 4000}, noMask, false),
        "the same slice without the mask");
    assertFalse(q128(64, new int[] {8192, 8192}, noMask, true), "group splits");
    assertFalse(q128(128, new int[] {8192, 8192}, noMask, false), "head_dim 128");
    assertFalse(q128(256, new int[] {8192, 8192}, noMask, false), "head_dim 256");
    assertTrue(q128(64, new int[] {0, 8192}, masked, false), "an empty slice does not count");
    assertFalse(q128(64, new int[] {0, 0}, noMask, false), "no query rows");
    assertFalse(q128(64, new int[0], new boolean[0], false), "no slices");
  }

  /** {@link FusedBatchPlan#q128Steps} of whole documents (kv_len = q_len). */
  private static boolean q128(int headDim, int[] docs, boolean[] causal, boolean groupSplits) {
    return FusedBatchPlan.q128Steps(headDim, docs, docs, causal, groupSplits);
  }

  /** The backward plans of a batch say what {@link FusedBatchPlan#q128Steps} says of its slices; forward plans never. */
  @Test
  void backwardPlansCarryTheQ128Rule() {
    int[] docs = {1600, 2500};
    List<SliceSpec> full = List.of(SliceSpec.full(0, 0, docs[0], docs[0]), SliceSpec.full(1, 0, docs[1], docs[1]));
    List<SliceSpec> causal = List.of(SliceSpec.causalBottomRight(0, docs[0], docs[0]),
        SliceSpec.causalBottomRight(1, docs[1], docs[1]));
    try (AttentionFixture f = new AttentionFixture(allocator, shape(4, 4, 64), docs, full, 11);
        AttentionFixture g = new AttentionFixture(allocator, shape(4, 4, 64), docs, causal, 12);
        AttentionFixture h = new AttentionFixture(allocator, shape(2, 2, 128), docs, full, 13)) {
      assertTrue(FusedBatchPlan.backward(f.backwardBatch(), GEOMETRY, 132, false).q128Steps, "long non-causal slices");
      assertFalse(FusedBatchPlan.forward(f.forwardBatch(), GEOMETRY).q128Steps, "a forward plan");
      assertFalse(FusedBatchPlan.backward(g.backwardBatch(), GEOMETRY, 132, false).q128Steps, "causal under 3,072 rows");
      assertFalse(FusedBatchPlan.backward(h.backwardBatch(), GEOMETRY, 132, false).q128Steps, "head_dim 128");
    }
  }

  /** Documents of the given lengths, repeated in turn while they fit in 16,384 tokens (schedule_policy.case_docs). */
  static int[] repeatedDocuments(int... lengths) {
    List<Integer> documents = new ArrayList<>();
    int total = 0;
    for (int d = 0; total + lengths[d % lengths.length] <= 16384; d++) {
      documents.add(lengths[d % lengths.length]);
      total += lengths[d % lengths.length];
    }
    return documents.stream().mapToInt(Integer::intValue).toArray();
  }

  /** Causal documents of the given lengths, once each: each key tile's query rows. */
  private static long[] keyTiles(int... lengths) {
    return keyTilesOf(128, lengths);
  }

  /** The same with key tiles of {@code blockN} rows. */
  private static long[] keyTilesOf(int blockN, int... lengths) {
    List<Long> costs = new ArrayList<>();
    for (int s : lengths) {
      for (int k = 0; k * blockN < s; k++) {
        costs.add((long) s - (long) blockN * k);
      }
    }
    return costs.stream().mapToLong(Long::longValue).toArray();
  }

  private static void assertDisjointAligned(long[][] buffers) {
    for (int i = 0; i < buffers.length; i++) {
      assertEquals(0, buffers[i][0] % ArenaLayout.ALIGNMENT, "buffer " + i + " alignment");
      for (int j = i + 1; j < buffers.length; j++) {
        boolean disjoint = buffers[i][0] + buffers[i][1] <= buffers[j][0] || buffers[j][0] + buffers[j][1] <= buffers[i][0];
        assertTrue(disjoint, "buffers " + i + " and " + j + " overlap");
      }
    }
  }

  @Test
  void tensorOfAnotherDtypeIsRejectedByName() {
    try (AttentionFixture f = new AttentionFixture(allocator, shape(2, 2, 64), new int[] {10},
        List.of(SliceSpec.full(0, 0, 10, 4)), 5);
        Tensor fp16 = Tensor.allocate(allocator, DType.FP16, 10, 2, 64)) {
      AttentionBatch good = f.forwardBatch();
      AttentionBatch bad = new AttentionBatch(good.shape(),
          List.of(KvSegment.forward(good.segments().get(0).k(), fp16)), good.slices());
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> FusedBatchPlan.forward(bad, GEOMETRY));
      assertTrue(e.getMessage().contains("segment 0 v is fp16"), e.getMessage());
    }
  }
}
