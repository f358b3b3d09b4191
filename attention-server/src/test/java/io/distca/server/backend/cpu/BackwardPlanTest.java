package io.distca.server.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AllocatorPerTest;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import java.util.List;
import org.junit.jupiter.api.Test;

/** How backward cuts a batch into units: whole keys when it can, balanced chunks when it must. */
class BackwardPlanTest extends AllocatorPerTest {
  private static final AttentionShape SHAPE = new AttentionShape(4, 2, 16, DType.BF16, 0.25f);

  private List<int[]> plan(CpuBackendOptions options, int threads, int[] segments, List<SliceSpec> slices) {
    try (AttentionFixture fx = new AttentionFixture(allocator, SHAPE, segments, slices, 1)) {
      return new BackwardPass(fx.backwardBatch(), options.conclude(), threads).plannedUnits();
    }
  }

  @Test
  void oneThreadKeepsEachSegmentWhole() {
    List<int[]> units = plan(new CpuBackendOptions().threads(1), 1, new int[] {300, 40},
        List.of(SliceSpec.causalBottomRight(0, 300, 300), SliceSpec.full(1, 5, 30, 7)));
    assertEquals(4, units.size(), "one unit per (segment, kv head)");
    for (int[] u : units) {
      assertEquals(0, u[4], "no unit is split, so dQ is written directly");
    }
    assertEquals(5, units.get(units.size() - 1)[2], "a unit covers only the keys slices read");
    assertEquals(35, units.get(units.size() - 1)[3]);
  }

  @Test
  void aLongDocumentIsCutSoThatEveryThreadHasWork() {
    int threads = 4;
    List<int[]> units = plan(new CpuBackendOptions().threads(threads).keyBlock(16).unitsPerThread(4), threads,
        new int[] {1000, 50}, List.of(SliceSpec.causalBottomRight(0, 1000, 1000), SliceSpec.causalBottomRight(1, 50, 50)));
    long longDocUnits = units.stream().filter(u -> u[0] == 0).count();
    assertTrue(longDocUnits >= 2 * threads, "the long document is cut into " + longDocUnits + " units");
    for (int[] u : units) {
      assertEquals(u[0] == 0 ? 1 : 0, u[4], "only the cut segment accumulates dQ");
      assertEquals(0, u[2] % 16, "chunks start on the key-block grid");
    }
    // chunks of one (segment, kv head) tile its keys exactly
    int[] covered = new int[1000];
    units.stream().filter(u -> u[0] == 0 && u[1] == 1).forEach(u -> {
      for (int k = u[2]; k < u[3]; k++) {
        covered[k]++;
      }
    });
    for (int k = 0; k < 1000; k++) {
      assertEquals(1, covered[k], "key " + k);
    }
  }

  @Test
  void chunksNeverExceedTheConfiguredKeyChunk() {
    List<int[]> units = plan(new CpuBackendOptions().threads(1).keyBlock(16).backwardKeyChunk(64), 1,
        new int[] {500}, List.of(SliceSpec.full(0, 0, 500, 20)));
    for (int[] u : units) {
      assertTrue(u[3] - u[2] <= 64, "chunk [" + u[2] + ", " + u[3] + ")");
      assertEquals(1, u[4]);
    }
    assertEquals(2 * 8, units.size(), "ceil(500 / 64) chunks per kv head");
  }
}
