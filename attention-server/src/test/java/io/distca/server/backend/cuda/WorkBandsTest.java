package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The persistent kernels' work list in bands (distca_attn.h section 11): the cuts, the schedule
 * model, and where the policy takes them; the expected ends are schedule_policy.py's work_bands for the
 * same costs (the Python host's policy is the same).
 */
class WorkBandsTest extends AllocatorPerTest {
  @Test
  void cutsStartABandWhereTheCostFallsByTheFactor() {
    long[] costs = {100, 90, 50, 49, 30, 20, 12, 10, 5, 1};
    assertArrayEquals(new int[] {2, 5, 6, 8, 9}, WorkBands.cuts(costs, 2.0, 8));
    assertArrayEquals(new int[] {2, 5, 6}, WorkBands.cuts(costs, 2.0, 3), "at most `most` ends");
    assertArrayEquals(new int[] {2, 4, 5, 6, 8, 9}, WorkBands.cuts(costs, 1.5, 8));
    assertArrayEquals(new int[0], WorkBands.cuts(new long[] {7, 7, 7}, 2.0, 8), "even costs: one band");
    assertArrayEquals(new int[0], WorkBands.cuts(new long[0], 2.0, 8));
  }

  /**
   * One tile of 6 and six of 1 for each of two heads on three CTAs: walked head by head, the second
   * head's long tile starts when the first head's short ones are done (ends at 9); in bands, both
   * long tiles start at once (8, the even share); heads side by side in pairs need no bands.
   */
  @Test
  void makespanIsTheClaimOrdersSchedule() {
    long[] tiles = {6, 1, 1, 1, 1, 1, 1};
    assertEquals(9.0, WorkBands.makespan(tiles, 2, 1, 3, WorkBands.NONE));
    assertEquals(8.0, WorkBands.makespan(tiles, 2, 1, 3, new int[] {1}));
    assertEquals(8.0, WorkBands.makespan(tiles, 2, 2, 3, WorkBands.NONE));
  }

  /** 16 heads on 132 CTAs, documents of 6,000, 3,000, 1,500 and 700 tokens (causal): the tail is long. */
  @Test
  void bandsWhereAFewTilesAreFarLonger() {
    long[] forward = forwardTiles(6000, 3000, 1500, 700);
    int[] ends = WorkBands.bands(forward, 16, WorkBands.FORWARD_HEAD_GROUP, 132);
    assertArrayEquals(new int[] {27, 53, 73, 85}, ends, "the Python host's bands");
    assertEquals(223.0, WorkBands.makespan(forward, 16, 2, 132, WorkBands.NONE));
    assertEquals(208.0, WorkBands.makespan(forward, 16, 2, 132, ends));
    long[] backward = backwardTiles(1, 6000, 3000, 1500, 700);
    assertArrayEquals(new int[] {16, 31, 45, 58, 69, 77, 82, 86},
        WorkBands.bands(backward, 16, WorkBands.BACKWARD_HEAD_GROUP, 132), "MHA backward: the Python host's bands");
    assertArrayEquals(new int[] {22, 40, 60, 76, 88, 100, 109, 114},
        WorkBands.bands(backwardTiles(4, 8192, 4096, 2048, 1024, 512), 4, WorkBands.BACKWARD_HEAD_GROUP, 132),
        "16/4 over documents of 8K down to 512 tokens");
    assertArrayEquals(new int[] {34, 67, 92, 109, 119},
        WorkBands.bands(backwardTiles(8, 8192, 4096, 2048, 1024, 512), 4, WorkBands.BACKWARD_CHUNKED_HEAD_GROUP, 132),
        "32/4 (the chunked walk's pairs of K/V heads)");
  }

  /**
   * Uniform documents have no long tail: no bands at 8K; at 2K (forward) and 1K (backward) the model
   * finds 1.2-1.4%, under {@link WorkBands#MIN_GAIN} (bands ran 6% slower there: NOTES v73).
   */
  @Test
  void noBandsWhereTheModelFindsLittle() {
    assertArrayEquals(WorkBands.NONE, WorkBands.bands(forwardTiles(repeat(2048, 8)), 16, 2, 132));
    assertArrayEquals(WorkBands.NONE, WorkBands.bands(backwardTiles(1, repeat(1024, 16)), 16, 1, 132));
    assertArrayEquals(WorkBands.NONE, WorkBands.bands(forwardTiles(8192, 8192), 16, 2, 132));
    assertArrayEquals(WorkBands.NONE, WorkBands.bands(backwardTiles(8, 8192, 8192), 4, 2, 132));
    assertArrayEquals(WorkBands.NONE, WorkBands.bands(new long[] {5}, 16, 2, 132), "one tile");
    double modelled = WorkBands.makespan(forwardTiles(repeat(2048, 8)), 16, 2, 132, WorkBands.NONE);
    double banded = WorkBands.makespan(forwardTiles(repeat(2048, 8)), 16, 2, 132,
        WorkBands.cuts(forwardTiles(repeat(2048, 8)), 2.0, DistcaAttnAbi.WORK_BANDS));
    assertTrue(banded < modelled && banded > modelled * (1 - WorkBands.MIN_GAIN),
        "2K forward: a small modelled gain, " + modelled + " -> " + banded);
  }

  /**
   * The plans' costs as the kernels' tiles: blocks plus a tile change forward; rows times the group
   * backward. head_dim 64's backward takes no bands (WorkBands.BACKWARD_MIN_HEAD_DIM), its forward does.
   */
  @Test
  void plansGiveTheirTilesCosts() {
    int[] segments = {1500, 300, 100};
    List<SliceSpec> specs = List.of(SliceSpec.causalBottomRight(0, 1500, 1500), SliceSpec.causalBottomRight(1, 300, 300),
        SliceSpec.causalBottomRight(2, 100, 100));
    int[] ctasTried = {1, 4, 8, 30, 60, 120};
    for (int headDim : new int[] {64, 128}) {
      try (AttentionFixture f = new AttentionFixture(allocator, FusedBatchPlanTest.shape(8, 2, headDim), segments, specs, 3)) {
        KernelGeometry g = FusedBatchPlanTest.GEOMETRY;
        FusedBatchPlan fwd = FusedBatchPlan.forward(f.forwardBatch(), g);
        long[] tiles = new long[fwd.numWork];
        for (int i = 0; i < tiles.length; i++) {
          tiles[i] = fwd.workCost[i] + WorkBands.FORWARD_TILE_OVERHEAD_BLOCKS;
        }
        boolean anyForward = false;
        for (int ctas : ctasTried) {
          int[] expected = WorkBands.bands(tiles, 8, 2, ctas);
          anyForward |= expected.length > 0;
          assertArrayEquals(expected, WorkBands.forward(fwd, ctas), "d" + headDim + " forward, " + ctas + " CTAs");
        }
        assertTrue(anyForward, "some CTA count gives this batch's forward bands");
        FusedBatchPlan bwd = FusedBatchPlan.backward(f.backwardBatch(), g);
        long[] keyTiles = new long[bwd.numWork];
        for (int i = 0; i < keyTiles.length; i++) {
          keyTiles[i] = bwd.workCost[i] * 4 + 2L * g.backwardBlockM();
        }
        boolean anyBackward = false;
        for (int ctas : ctasTried) {
          boolean banded = headDim >= WorkBands.BACKWARD_MIN_HEAD_DIM;
          int[] expected = banded ? WorkBands.bands(keyTiles, 2, 1, ctas) : WorkBands.NONE;
          anyBackward |= WorkBands.bands(keyTiles, 2, 1, ctas).length > 0;
          assertArrayEquals(expected, WorkBands.backward(bwd, ctas, g.backwardBlockM(), false),
              "d" + headDim + " backward, " + ctas + " CTAs");
          assertArrayEquals(banded ? WorkBands.bands(keyTiles, 2, 2, ctas) : WorkBands.NONE,
              WorkBands.backward(bwd, ctas, g.backwardBlockM(), true), "d" + headDim + " chunked backward, " + ctas + " CTAs");
        }
        assertTrue(anyBackward, "some CTA count models this batch's backward better in bands");
      }
    }
  }

  private static int[] repeat(int length, int times) {
    int[] out = new int[times];
    java.util.Arrays.fill(out, length);
    return out;
  }

  /** Causal documents' forward tiles, most expensive first: key blocks of 128 plus a tile change. */
  private static long[] forwardTiles(int... lengths) {
    List<Long> tiles = new ArrayList<>();
    for (int s : lengths) {
      for (int b = 0; b * 128 < s; b++) {
        tiles.add((Math.min(s, (b + 1) * 128L) + 127) / 128 + WorkBands.FORWARD_TILE_OVERHEAD_BLOCKS);
      }
    }
    return tiles.stream().sorted((x, y) -> Long.compare(y, x)).mapToLong(Long::longValue).toArray();
  }

  /** Causal documents' backward key tiles of 128 keys, most expensive first: rows times `group` heads plus two 64-row steps. */
  private static long[] backwardTiles(int group, int... lengths) {
    List<Long> tiles = new ArrayList<>();
    for (int s : lengths) {
      for (int k = 0; k * 128 < s; k++) {
        tiles.add((s - 128L * k) * group + 128);
      }
    }
    return tiles.stream().sorted((x, y) -> Long.compare(y, x)).mapToLong(Long::longValue).toArray();
  }
}
