package io.distca.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/** The word-at-a-time scan finds exactly what an element-by-element check finds, at any position. */
class FiniteCheckTest {
  @Test
  void findsTheFirstNonFiniteElementOfEveryDtypeAtEveryOffset() {
    SplittableRandom rnd = new SplittableRandom(3);
    try (BufferAllocator root = new RootAllocator()) {
      for (DType dtype : new DType[] {DType.BF16, DType.FP16, DType.FP32}) {
        for (int n : new int[] {1, 3, 4, 7, 8, 9, 33}) {
          for (int at = 0; at < n; at++) {
            for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY}) {
              try (Tensor t = Tensor.allocate(root, dtype, n)) {
                for (int i = 0; i < n; i++) {
                  // large finite values share many exponent bits with inf: they must not be flagged
                  t.setFloat(i, (float) ((rnd.nextBoolean() ? 1 : -1) * rnd.nextDouble() * (dtype == DType.FP16 ? 6e4 : 3e38)));
                }
                assertEquals(-1, FiniteCheck.firstNonFinite(t, false), dtype + " n=" + n + " all finite");
                t.setFloat(at, bad);
                assertEquals(at, FiniteCheck.firstNonFinite(t, false), dtype + " n=" + n + " " + bad + " at " + at);
                long allowed = FiniteCheck.firstNonFinite(t, true);
                assertEquals(bad == Float.NEGATIVE_INFINITY ? -1 : at, allowed, dtype + " -inf allowed");
              }
            }
          }
        }
      }
    }
  }
}
