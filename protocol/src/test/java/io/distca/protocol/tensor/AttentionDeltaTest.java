package io.distca.protocol.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

class AttentionDeltaTest {

  private static Tensor random(BufferAllocator a, SplittableRandom rnd, DType dtype, int... shape) {
    Tensor t = Tensor.allocate(a, dtype, shape);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 4 - 2));
    }
    return t;
  }

  @Test
  void rowSumsOfTheProductPerRowAndHeadInTheLseLayout() {
    SplittableRandom rnd = new SplittableRandom(7);
    int rows = 37;
    int heads = 3;
    int d = 16;
    try (BufferAllocator a = new RootAllocator();
        Tensor o = random(a, rnd, DType.BF16, rows, heads, d);
        Tensor dO = random(a, rnd, DType.BF16, rows, heads, d);
        Tensor delta = AttentionDelta.of(a, o, dO)) {
      assertEquals(DType.FP32, delta.dtype());
      assertEquals(heads, delta.dim(0));
      assertEquals(rows, delta.dim(1));
      for (int r = 0; r < rows; r++) {
        for (int h = 0; h < heads; h++) {
          double sum = 0;
          for (int e = 0; e < d; e++) {
            long at = ((long) r * heads + h) * d + e;
            sum += (double) o.getFloat(at) * dO.getFloat(at);
          }
          assertEquals((float) sum, delta.getFloat((long) h * rows + r), "row " + r + " head " + h);
        }
      }
    }
  }

  @Test
  void writesOnlyItsColumnsOfALargerTensor() {
    SplittableRandom rnd = new SplittableRandom(8);
    try (BufferAllocator a = new RootAllocator();
        Tensor o = random(a, rnd, DType.FP16, 5, 2, 8);
        Tensor dO = random(a, rnd, DType.FP16, 5, 2, 8);
        Tensor whole = AttentionDelta.of(a, o, dO);
        Tensor into = Tensor.allocate(a, DType.FP32, 2, 11)) {
      for (long i = 0; i < into.numel(); i++) {
        into.setFloat(i, -7f);
      }
      AttentionDelta.computeInto(o.sliceRows(1, 4), dO.sliceRows(1, 4), into, 6);
      for (int h = 0; h < 2; h++) {
        for (int c = 0; c < 11; c++) {
          float expected = c >= 6 && c < 9 ? whole.getFloat(h * 5L + (c - 6 + 1)) : -7f;
          assertEquals(expected, into.getFloat(h * 11L + c), "head " + h + " column " + c);
        }
      }
    }
  }

  @Test
  void refusesMismatchedShapesAndColumnsOutsideTheTarget() {
    try (BufferAllocator a = new RootAllocator();
        Tensor o = Tensor.allocate(a, DType.BF16, 4, 2, 8);
        Tensor dO = Tensor.allocate(a, DType.BF16, 4, 2, 4);
        Tensor dO2 = Tensor.allocate(a, DType.BF16, 4, 2, 8);
        Tensor into = Tensor.allocate(a, DType.FP32, 2, 5);
        Tensor wrongHeads = Tensor.allocate(a, DType.FP32, 3, 8);
        Tensor notFloat32 = Tensor.allocate(a, DType.BF16, 2, 8)) {
      assertTrue(assertThrows(IllegalArgumentException.class, () -> AttentionDelta.of(a, o, dO)).getMessage()
          .contains("one [rows, heads, head_dim] shape"));
      assertThrows(IllegalArgumentException.class, () -> AttentionDelta.computeInto(o, dO2, into, 2));
      assertThrows(IllegalArgumentException.class, () -> AttentionDelta.computeInto(o, dO2, into, -1));
      assertThrows(IllegalArgumentException.class, () -> AttentionDelta.computeInto(o, dO2, wrongHeads, 0));
      assertThrows(IllegalArgumentException.class, () -> AttentionDelta.computeInto(o, dO2, notFloat32, 0));
      AttentionDelta.computeInto(o, dO2, into, 1); // columns [1, 5): fits
      assertEquals(0f, into.getFloat(4));
    }
  }
}
