package io.distca.protocol.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.LseMerge.Part;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class LseMergeTest {
  private BufferAllocator allocator;
  private OwnedTensors tensors;

  @BeforeEach
  void open() {
    allocator = new RootAllocator();
    tensors = new OwnedTensors(allocator);
  }

  @AfterEach
  void close() {
    tensors.close();
    allocator.close(); // fails on a leaked buffer
  }

  private static void set(Tensor t, float... values) {
    for (int i = 0; i < values.length; i++) {
      t.setFloat(i, values[i]);
    }
  }

  @Test
  void twoScalarPartsFollowTheFormula() {
    // one row, one head, head_dim 2
    Tensor o1 = tensors.allocate(DType.FP32, 1, 1, 2);
    Tensor o2 = tensors.allocate(DType.FP32, 1, 1, 2);
    Tensor l1 = tensors.allocate(DType.FP32, 1, 1);
    Tensor l2 = tensors.allocate(DType.FP32, 1, 1);
    set(o1, 1f, -2f);
    set(o2, 3f, 0.5f);
    set(l1, 0.5f);
    set(l2, -1f);
    Tensor out = tensors.allocate(DType.FP32, 1, 1, 2);
    Tensor lse = tensors.allocate(DType.FP32, 1, 1);
    LseMerge.merge(List.of(Part.of(o1, l1), Part.of(o2, l2)), Part.of(out, lse));
    double merged = Math.log(Math.exp(0.5) + Math.exp(-1));
    double w1 = Math.exp(0.5 - merged);
    double w2 = Math.exp(-1 - merged);
    assertEquals(merged, lse.getFloat(0), 1e-6);
    assertEquals(w1 * 1 + w2 * 3, out.getFloat(0), 1e-6);
    assertEquals(w1 * -2 + w2 * 0.5, out.getFloat(1), 1e-6);
    assertEquals(merged, LseMerge.mergedLse(0.5, -1), 1e-12);
  }

  @Test
  void allMinusInfinityGivesZeroAndMinusInfinity() {
    Tensor o1 = tensors.allocate(DType.BF16, 2, 1, 3);
    Tensor o2 = tensors.allocate(DType.BF16, 2, 1, 3);
    set(o1, 7, 7, 7, 7, 7, 7); // stale values a part may hold for rows that saw nothing
    set(o2, 9, 9, 9, 9, 9, 9);
    Tensor l1 = tensors.allocate(DType.FP32, 1, 2);
    Tensor l2 = tensors.allocate(DType.FP32, 1, 2);
    set(l1, Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY);
    set(l2, Float.NEGATIVE_INFINITY, 2f); // row 1: only part 2 saw keys
    Tensor out = tensors.allocate(DType.BF16, 2, 1, 3);
    Tensor lse = tensors.allocate(DType.FP32, 1, 2);
    set(out, Float.NaN, Float.NaN, Float.NaN, Float.NaN, Float.NaN, Float.NaN);
    LseMerge.merge(List.of(Part.of(o1, l1), Part.of(o2, l2)), Part.of(out, lse));
    assertEquals(Float.NEGATIVE_INFINITY, lse.getFloat(0));
    for (int e = 0; e < 3; e++) {
      assertEquals(0f, out.getFloat(e));
      assertEquals(9f, out.getFloat(3 + e), "a -inf part has weight 0, the other weight 1");
    }
    assertEquals(2f, lse.getFloat(1));
    assertEquals(Double.NEGATIVE_INFINITY, LseMerge.mergedLse(Double.NEGATIVE_INFINITY, Double.NEGATIVE_INFINITY));
  }

  /** Strided LSE windows, in-place output and associativity: merge(a, b, c) == merge(merge(a, b), c). */
  @Test
  void threeWayMergeInPlaceEqualsMergingStepByStep() {
    long seed = System.nanoTime();
    Random random = new Random(seed);
    int rows = 5;
    int heads = 3;
    int d = 4;
    Tensor lseAll = tensors.allocate(DType.FP32, heads, 2 + 3 * rows); // the three parts' windows at columns 2, 7, 12
    List<Part> parts = new ArrayList<>();
    for (int p = 0; p < 3; p++) {
      Tensor o = tensors.allocate(DType.FP32, rows, heads, d);
      for (int i = 0; i < o.numel(); i++) {
        o.setFloat(i, (float) random.nextGaussian());
      }
      parts.add(new Part(o, lseAll, 2 + p * rows));
      for (int h = 0; h < heads; h++) {
        for (int r = 0; r < rows; r++) {
          float l = random.nextInt(5) == 0 ? Float.NEGATIVE_INFINITY : (float) (3 * random.nextGaussian());
          lseAll.setFloat(parts.get(p).lseIndex(h, r), l);
        }
      }
    }
    Tensor stepO = tensors.allocate(DType.FP32, rows, heads, d);
    Tensor stepLse = tensors.allocate(DType.FP32, heads, rows);
    LseMerge.merge(List.of(parts.get(0), parts.get(1)), Part.of(stepO, stepLse));
    LseMerge.merge(List.of(Part.of(stepO, stepLse), parts.get(2)), Part.of(stepO, stepLse));

    LseMerge.merge(parts, parts.get(0)); // in place, into part 0's own tensors
    for (int h = 0; h < heads; h++) {
      for (int r = 0; r < rows; r++) {
        float expected = stepLse.getFloat((long) h * rows + r);
        float actual = lseAll.getFloat(parts.get(0).lseIndex(h, r));
        if (expected == Float.NEGATIVE_INFINITY) {
          assertEquals(expected, actual, "seed " + seed);
        } else {
          assertEquals(expected, actual, 1e-5, "seed " + seed);
        }
      }
    }
    for (int i = 0; i < stepO.numel(); i++) {
      assertEquals(stepO.getFloat(i), parts.get(0).o().getFloat(i), 1e-5, "seed " + seed);
    }
  }

  @Test
  void badInputsAreRejectedWithTheProblemNamed() {
    Tensor o = tensors.allocate(DType.FP32, 2, 2, 4);
    Tensor lse = tensors.allocate(DType.FP32, 2, 2);
    Tensor otherShape = tensors.allocate(DType.FP32, 2, 2, 5);
    Tensor intLse = tensors.allocate(DType.INT32, 2, 2);
    Part good = Part.of(o, lse);

    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(), good));
    assertTrue(e.getMessage().contains("at least one part"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(good, Part.of(otherShape, lse)), good));
    assertTrue(e.getMessage().contains("part 1 O has shape [2, 2, 5]"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(Part.of(o, intLse)), good));
    assertTrue(e.getMessage().contains("part 0 LSE must be fp32"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(new Part(o, lse, 1)), good));
    assertTrue(e.getMessage().contains("LSE columns [1, 3)"), e.getMessage());
    lse.setFloat(3, Float.NaN);
    e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(good), Part.of(o, tensors.allocate(DType.FP32, 2, 2))));
    assertTrue(e.getMessage().contains("head 1, row 1"), e.getMessage());
    lse.setFloat(3, Float.POSITIVE_INFINITY);
    e = assertThrows(IllegalArgumentException.class, () -> LseMerge.merge(List.of(good), Part.of(o, tensors.allocate(DType.FP32, 2, 2))));
    assertTrue(e.getMessage().contains("Infinity"), e.getMessage());
  }
}
