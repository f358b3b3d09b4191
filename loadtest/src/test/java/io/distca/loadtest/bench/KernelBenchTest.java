package io.distca.loadtest.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.cpu.CpuBackend;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/** The rebatching benchmark's shards: what they are, and that they compute what the whole documents do. */
class KernelBenchTest {

  @Test
  void shardsAreCaTasksOf128To4kRowsCoveringDocumentPrefixesWithCutsOnTheGrid() {
    double target = 16384.0 * 16384 / 2;
    for (int grid : new int[] {128, 1}) {
      KernelBench.Sharded s = KernelBench.shardDocuments(DocLengthDistribution.pretrain(), target, grid,
          new SplittableRandom(7));
      int[] next = new int[s.lengths().length];
      double pairs = 0;
      int offGrid = 0;
      for (BenchBatch.Shard shard : s.shards()) {
        assertTrue(shard.rows() >= KernelBench.MIN_SHARD && shard.rows() <= KernelBench.MAX_SHARD, shard.toString());
        assertEquals(next[shard.doc()], shard.qs(), "a document's shards cover its rows in order: " + shard);
        assertTrue(shard.qe() <= s.lengths()[shard.doc()], shard.toString());
        next[shard.doc()] = shard.qe();
        offGrid += shard.qs() % 128 != 0 ? 1 : 0;
        pairs += ((double) shard.qe() * shard.qe() - (double) shard.qs() * shard.qs()) / 2;
      }
      assertTrue(pairs >= target, "the shards hold the long sequence's FLOPs");
      assertTrue(s.shards().size() > 20, "many shards: " + s.shards().size());
      if (grid == 128) {
        assertEquals(0, offGrid, "every cut on the grid");
      } else {
        assertTrue(offGrid > 0, "cuts anywhere land off the grid too");
      }
    }
  }

  @Test
  void shardedBatchComputesWhatTheWholeDocumentsDo() {
    AttentionShape shape = new AttentionShape(4, 2, 64, DType.BF16, AttentionShape.defaultScale(64));
    int[] lengths = {300, 700};
    List<BenchBatch.Shard> shards = List.of(
        new BenchBatch.Shard(0, 0, 128), new BenchBatch.Shard(0, 128, 300),
        new BenchBatch.Shard(1, 0, 256), new BenchBatch.Shard(1, 256, 384), new BenchBatch.Shard(1, 384, 700));
    try (BufferAllocator root = new RootAllocator();
        CpuBackend cpu = new CpuBackend();
        BenchBatch whole = new BenchBatch(root, shape, true, lengths, 11);
        BenchBatch sharded = new BenchBatch(root, shape, true, lengths, shards, 11)) {
      assertEquals(whole.forwardFlopsFaConvention(), sharded.forwardFlopsFaConvention(), 1e-6);
      for (BenchBatch b : List.of(whole, sharded)) {
        cpu.submitForward(b.forward()).join();
        cpu.submitBackward(b.backward()).join();
      }
      assertClose(whole.o, sharded.o, "O");
      assertClose(whole.lse, sharded.lse, "LSE");
      assertClose(whole.dq, sharded.dq, "dQ");
      assertClose(whole.dk, sharded.dk, "dK");
      assertClose(whole.dv, sharded.dv, "dV");
    }
  }

  @Test
  void rebatchingDrawsMeasureOneSampleEachFromTheFirstSeedOn() {
    DocLengthDistribution docs = DocLengthDistribution.uniform(128, 400);
    int longSeq = 512;
    try (BufferAllocator root = new RootAllocator(); CpuBackend cpu = new CpuBackend()) {
      KernelBench bench = new KernelBench(cpu, root, 0, 1, r -> null);
      List<KernelBench.RebatchDraw> draws = bench.rebatchingDraws(64, longSeq, docs, 5, 3);
      assertEquals(3, draws.size());
      java.util.Set<String> samples = new java.util.HashSet<>();
      for (int i = 0; i < draws.size(); i++) {
        KernelBench.RebatchDraw d = draws.get(i);
        assertEquals(5 + i, d.seed());
        KernelBench.Sharded s = KernelBench.shardDocuments(docs, (double) longSeq * longSeq / 2, 128,
            new SplittableRandom(d.seed()));
        assertEquals(s.lengths().length, d.documents(), "draw " + i + " is the sample of its seed");
        assertEquals(s.shards().size(), d.shards());
        samples.add(java.util.Arrays.toString(s.lengths()) + s.shards());
        assertTrue(d.forwardRatio() > 0 && Double.isFinite(d.forwardRatio()), d.toString());
        assertTrue(d.backwardRatio() > 0 && Double.isFinite(d.backwardRatio()), d.toString());
      }
      assertEquals(3, samples.size(), "each draw is its own sample");
      assertTrue(bench.rebatchingDraws(64, longSeq, docs, 5, 0).isEmpty());
      org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
          () -> bench.rebatchingDraws(64, longSeq, docs, 5, -1));
    }
  }

  @Test
  void gqaRowsRunTheGroupedHeadsCausalAndNot() {
    try (BufferAllocator root = new RootAllocator(); CpuBackend cpu = new CpuBackend()) {
      KernelBench bench = new KernelBench(cpu, root, 0, 1, r -> null);
      List<KernelBench.Row> rows = bench.gqaGrid(256, 64, 4, 1, new int[] {128, 256, 512});
      assertEquals(4, rows.size(), "s = 512 is over the tokens: left out");
      for (KernelBench.Row r : rows) {
        assertEquals("uniform 4/1", r.label());
        assertEquals(64, r.headDim());
        assertEquals(256 / r.seqLen(), r.slices());
        assertTrue(r.forwardTflops() > 0 && r.backwardTflops() > 0, r.toString());
      }
      assertEquals(List.of(true, true, false, false), rows.stream().map(KernelBench.Row::causal).toList());
      KernelBench.Row mix = bench.gqaVarlen("pretrain mix 4/1", 64, 4, 1, new int[] {200, 50, 6});
      assertEquals("pretrain mix 4/1", mix.label());
      assertEquals(3, mix.slices(), "one causal slice per document");
      assertTrue(mix.causal() && mix.forwardTflops() > 0 && mix.backwardTflops() > 0, mix.toString());
    }
  }

  @Test
  void spreadTakesTheMiddleOfAnEvenCount() {
    KernelBench.Spread odd = KernelBench.Spread.of(new double[] {0.93, 0.88, 0.91});
    assertEquals(0.91, odd.median(), 1e-12);
    assertEquals(0.88, odd.min(), 1e-12);
    assertEquals(0.93, odd.max(), 1e-12);
    assertEquals((0.93 + 0.88 + 0.91) / 3, odd.mean(), 1e-12);
    assertEquals(0.895, KernelBench.Spread.of(new double[] {0.95, 0.89, 0.90, 0.80}).median(), 1e-12);
    org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> KernelBench.Spread.of(new double[0]));
  }

  /** Equal up to bf16 rounding and summation order: 1% of the tensor's largest magnitude. */
  private static void assertClose(Tensor expected, Tensor actual, String what) {
    assertEquals(expected.numel(), actual.numel(), what);
    double max = 0;
    for (long i = 0; i < expected.numel(); i++) {
      max = Math.max(max, Math.abs(expected.getFloat(i)));
    }
    assertTrue(max > 0, what + " all zero");
    for (long i = 0; i < expected.numel(); i++) {
      double e = expected.getFloat(i);
      double a = actual.getFloat(i);
      assertTrue(Math.abs(e - a) <= 1e-2 * max, what + "[" + i + "]: " + a + " vs " + e);
    }
  }
}
