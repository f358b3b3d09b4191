package io.distca.protocol.model;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** {@link CostModel#pairs} against counting the mask's pairs one by one. */
class CostModelPairsTest {

  private static long bruteForce(long q, long kvLen, boolean causal, long diagonal) {
    long n = 0;
    for (long i = 0; i < q; i++) {
      for (long j = 0; j < kvLen; j++) {
        if (!causal || j <= i + diagonal) {
          n++;
        }
      }
    }
    return n;
  }

  @Test
  void everySmallCaseMatchesCounting() {
    for (int q = 0; q <= 12; q++) {
      for (int kv = 0; kv <= 12; kv++) {
        for (int diagonal = -16; diagonal <= 16; diagonal++) {
          for (boolean causal : new boolean[] {true, false}) {
            assertEquals(bruteForce(q, kv, causal, diagonal), CostModel.pairs(q, kv, causal, diagonal),
                "q=" + q + " kv=" + kv + " causal=" + causal + " diagonal=" + diagonal);
          }
        }
      }
    }
  }

  @Test
  void randomCasesMatchCounting() {
    long seed = System.nanoTime();
    Random random = new Random(seed);
    for (int n = 0; n < 3000; n++) {
      long q = random.nextInt(300);
      long kv = random.nextInt(300);
      long diagonal = random.nextInt(1000) - 500;
      boolean causal = random.nextInt(4) != 0;
      assertEquals(bruteForce(q, kv, causal, diagonal), CostModel.pairs(q, kv, causal, diagonal),
          "q=" + q + " kv=" + kv + " causal=" + causal + " diagonal=" + diagonal + " (seed " + seed + ")");
    }
  }

  @Test
  void bottomRightOverloadUsesKvMinusQ() {
    for (int q = 0; q <= 20; q++) {
      for (int kv = q; kv <= 25; kv++) {
        assertEquals(bruteForce(q, kv, true, kv - q), CostModel.pairs(q, kv, true));
        assertEquals((long) q * (kv - q) + (long) q * (q + 1) / 2, CostModel.pairs(q, kv, true), "DESIGN's formula");
      }
    }
  }

  @Test
  void longDocumentsDoNotOverflow() {
    long q = 3_000_000;
    // a full causal square of 3M tokens: q (q + 1) / 2 pairs, well past 2^31
    assertEquals(q * (q + 1) / 2, CostModel.pairs(q, q, true, 0));
  }
}
