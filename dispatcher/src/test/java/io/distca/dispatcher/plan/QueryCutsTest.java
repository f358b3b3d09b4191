package io.distca.dispatcher.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.CostModel;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class QueryCutsTest {

  @Test
  void rangePairsAgreeWithTheCostModelsPerTaskMasking() {
    SplittableRandom rng = new SplittableRandom(1);
    for (int i = 0; i < 2_000; i++) {
      int length = 1 + rng.nextInt(400_000);
      int a = rng.nextInt(length);
      int b = a + 1 + rng.nextInt(length - a);
      long causal = CostModel.pairs(b - a, b, true, a); // keys [0, b), diagonal qStart - kvStart = a
      assertEquals(causal, QueryCuts.rangePairs(a, b, length, true));
      assertEquals(CostModel.pairs(b - a, length, false), QueryCuts.rangePairs(a, b, length, false));
    }
  }

  @Test
  void tailAndHeadCutsMoveAsManyPairsAsFitAndNoRowMore() {
    SplittableRandom rng = new SplittableRandom(2);
    for (int i = 0; i < 5_000; i++) {
      boolean causal = rng.nextBoolean();
      int length = 1 + rng.nextInt(1 << 20);
      int a = rng.nextInt(length);
      int e = a + 1 + rng.nextInt(length - a);
      double budget = rng.nextDouble() * QueryCuts.rangePairs(a, e, length, causal) * 1.2;
      int tail = QueryCuts.tailCut(a, e, length, causal, budget);
      assertTrue(QueryCuts.rangePairs(tail, e, length, causal) <= budget);
      assertTrue(tail == a || QueryCuts.rangePairs(tail - 1, e, length, causal) > budget, "tail not maximal");
      int head = QueryCuts.headCut(a, e, length, causal, budget);
      assertTrue(QueryCuts.rangePairs(a, head, length, causal) <= budget);
      assertTrue(head == e || QueryCuts.rangePairs(a, head + 1, length, causal) > budget, "head not maximal");
    }
  }

  @Test
  void symmetricHeadAndTailHoldExactlyLinearPairs() {
    SplittableRandom rng = new SplittableRandom(3);
    for (int i = 0; i < 5_000; i++) {
      int length = 2 + rng.nextInt(1 << 20);
      int a = rng.nextInt(length - 1);
      int b = a + 2 + rng.nextInt(length - a - 1);
      int h = rng.nextInt((b - a) / 2 + 1);
      long both = QueryCuts.rangePairs(a, a + h, length, true) + QueryCuts.rangePairs(b - h, b, length, true);
      assertEquals(both, QueryCuts.headTailPairs(a, b, h));
      double budget = rng.nextDouble() * QueryCuts.rangePairs(a, b, length, true);
      int rows = QueryCuts.headTailRows(a, b, budget);
      assertTrue(QueryCuts.headTailPairs(a, b, rows) <= budget);
      assertTrue(rows == (b - a) / 2 || QueryCuts.headTailPairs(a, b, rows + 1) > budget, "not maximal");
    }
  }
}
