package io.distca.dispatcher.sim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class StepSimulatorTest {
  private final StepSimulator simulator = new StepSimulator(SimulationSettings.defaults());

  private static List<int[]> ranksOf(int ranks, int[] lengths) {
    List<int[]> docs = new ArrayList<>();
    for (int r = 0; r < ranks; r++) {
      docs.add(lengths.clone());
    }
    return docs;
  }

  @Test
  void identicalRanksGainNothingFromDisaggregation() {
    // every rank already does the same work: disaggregation can only add transfer time
    StepEstimate estimate = simulator.simulate(TrainingModel.LLAMA_3_8B, ranksOf(8, new int[] {8192, 8192, 16384}), 8);
    assertEquals(1.0, estimate.colocatedImbalance(), 1e-9);
    assertTrue(estimate.speedup() <= 1.0, "speedup " + estimate.speedup());
    assertTrue(estimate.speedup() > 0.9, "transfer should mostly hide behind compute: " + estimate.speedup());
  }

  @Test
  void aLongDocumentStragglerIsRemovedByDisaggregation() {
    // rank 0 holds one 16K-token document, the others eight 2K ones: the same tokens, 8x the attention
    List<int[]> docs = ranksOf(8, new int[] {2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048});
    docs.set(0, new int[] {16384});
    StepEstimate estimate = simulator.simulate(TrainingModel.LLAMA_3_8B, docs, 8);
    assertTrue(estimate.colocatedImbalance() > 1.05, "imbalance " + estimate.colocatedImbalance());
    assertTrue(estimate.speedup() > 1.0, "speedup " + estimate.speedup());
    assertTrue(estimate.planImbalance() <= 1.05);
  }

  @Test
  void inPlaceNeedsOneServerPerRank() {
    assertThrows(IllegalArgumentException.class,
        () -> simulator.simulate(TrainingModel.LLAMA_3_8B, ranksOf(4, new int[] {4096}), 8));
  }

  @Test
  void kernelTableInterpolatesInLogSpaceAndClampsAtItsEdges() {
    KernelThroughputTable table = new KernelThroughputTable(new int[] {128, 512}, new int[] {1024, 4096},
        new double[][] {{100, 200}, {300, 400}});
    assertEquals(100e12, table.flopsPerSecond(128, 1024), 1);
    assertEquals(400e12, table.flopsPerSecond(512, 4096), 1);
    assertEquals(100e12, table.flopsPerSecond(1, 1), 1);
    assertEquals(400e12, table.flopsPerSecond(1 << 20, 1 << 20), 1);
    assertEquals(150e12, table.flopsPerSecond(128, 2048), 1e3); // halfway in log2 between 1024 and 4096
    assertEquals(250e12, table.flopsPerSecond(256, 2048), 1e3);
    assertEquals(400e12, table.peakFlopsPerSecond(), 1);
    assertThrows(IllegalArgumentException.class,
        () -> new KernelThroughputTable(new int[] {512, 128}, new int[] {1}, new double[][] {{1}, {1}}));
    assertThrows(IllegalArgumentException.class,
        () -> new KernelThroughputTable(new int[] {128}, new int[] {1}, new double[][] {{-1}}));
  }

  @Test
  void modelsCountTheirLinearWeights() {
    // Llama-3-8B: 32 layers x 218,103,808 linear weights = 6.98e9 (plus embeddings, not counted here)
    assertEquals(218_103_808L, TrainingModel.LLAMA_3_8B.linearParamsPerLayer());
    assertEquals(TrainingModel.LLAMA_34B, TrainingModel.byName("llama-34b"));
    assertThrows(IllegalArgumentException.class, () -> TrainingModel.byName("llama-70b"));
  }
}
